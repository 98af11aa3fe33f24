#!/bin/bash
# The official image's probe, as far as the compose file uses it
# (`healthcheck.sh --connect --innodb_initialized`): the server answers a
# query over its socket, which it does only once InnoDB is up.
exec mariadb --protocol=socket -uroot -e 'SELECT 1' >/dev/null
