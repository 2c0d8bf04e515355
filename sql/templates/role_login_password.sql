-- {verb} is CREATE or ALTER. Utility statements take no bind parameters: the password comes in as
-- a psycopg.sql.Literal, quoted on the client.
{verb} ROLE {role} LOGIN PASSWORD {password}
