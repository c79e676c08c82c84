/* `xevf-agent migrate ...`: drives a migration between two agents' Migration
 * services, for operators and tests. */
#ifndef XEVF_CLI_MIGRATE_H
#define XEVF_CLI_MIGRATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* argv[0] is "migrate". Returns the process exit status. */
int migrate_main(int argc, char **argv);

/* State files written by `migrate save`: each StateChunk message as a 4-byte
 * big-endian length and the protobuf bytes. Reads the next record into a
 * malloc'd buffer: 1 read, 0 clean end of file, -1 malformed (message in
 * *error, malloc'd). Records above 8 MiB are refused. */
int migrate_read_record(FILE *f, uint8_t **buf, size_t *len, char **error);

#endif
