-- Is the connected role a superuser, and who is it?
SELECT current_setting('is_superuser') = 'on', current_user
