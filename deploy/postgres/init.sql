-- Runs once, when the PostgreSQL volume is first initialised: one database per service (DESIGN §2).
CREATE DATABASE orders;
CREATE DATABASE capacity;
CREATE DATABASE quality;
CREATE DATABASE identity;
