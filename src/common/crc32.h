/*-------------------------------------------------------------------------
 *
 * crc32.h
 *	  The IEEE CRC-32, for the key checksum.  Plain C, no server headers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_COMMON_CRC32_H
#define HK_COMMON_CRC32_H

#include <stddef.h>
#include <stdint.h>

extern uint32_t hk_crc32(const void *data, size_t len);

#endif							/* HK_COMMON_CRC32_H */
