#!/bin/bash
# First start of an empty data directory: create the system tables and let
# root in from the network with MARIADB_ROOT_PASSWORD, as the official image
# does. Later starts keep what the volume holds.
set -euo pipefail
install -d -o mysql -g mysql /run/mysqld
chown mysql:mysql /var/lib/mysql
args=(--user=mysql --bind-address=0.0.0.0 --skip-name-resolve)
if [[ ! -d /var/lib/mysql/mysql ]]; then
    : "${MARIADB_ROOT_PASSWORD:?set MARIADB_ROOT_PASSWORD}"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
    init=/run/mysqld/init.sql
    password="${MARIADB_ROOT_PASSWORD//\'/\'\'}"
    cat >"$init" <<SQL
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
    chown mysql:mysql "$init"
    args+=(--init-file="$init")
fi
exec mariadbd "${args[@]}"
