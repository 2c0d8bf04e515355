-- A database of the embedded server, owned by its role.
CREATE DATABASE {database} OWNER {owner} ENCODING 'UTF8' TEMPLATE template0
