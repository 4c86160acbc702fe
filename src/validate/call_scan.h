/*-------------------------------------------------------------------------
 *
 * call_scan.h
 *	  A scan node for validate_key() called in FROM (call_scan.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_VALIDATE_CALL_SCAN_H
#define HK_VALIDATE_CALL_SCAN_H

extern void hk_call_scan_init(void);

#endif							/* HK_VALIDATE_CALL_SCAN_H */
