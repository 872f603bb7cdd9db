-- One database per homeserver on the shared MariaDB.
CREATE DATABASE IF NOT EXISTS hs1 CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE DATABASE IF NOT EXISTS hs2 CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
GRANT ALL ON hs1.* TO 'tricolor'@'%';
GRANT ALL ON hs2.* TO 'tricolor'@'%';
