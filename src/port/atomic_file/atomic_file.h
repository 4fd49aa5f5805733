/* Crash-safe whole-file writes and bounded whole-file reads.
 * atomic_file_write() never leaves a half-written file at `path`: the data goes to a temporary
 * file in the same directory, is fsync'ed, renamed over `path` (atomic on POSIX), and the
 * directory is fsync'ed so the rename itself survives a power cut. After a crash at any point,
 * `path` holds either the complete old content or the complete new content. A stale temporary
 * (".<name>.tmp-*") may remain after a crash; it is never read by atomic_file_read().
 * Thread-safety: both functions are reentrant; concurrent writers of the SAME path must be
 * serialised by the caller (the last rename wins, each file stays whole). */
#ifndef ATOMIC_FILE_H
#define ATOMIC_FILE_H

#include <stddef.h>

/* Replaces the content of `path` with data[0..len) and sets its permission bits to `mode`
 * (e.g. 0600 for files holding secrets; applied to the temporary before it becomes visible).
 * On any failure the previous file is intact, the temporary is removed and the errno reason is
 * logged once (module "atomic_file").
 * @retval GW_OK
 * @retval GW_ERR_INVAL      NULL path, NULL data with len > 0, or a path too long
 * @retval GW_ERR_STORAGE    no space (ENOSPC/EDQUOT), read-only file system (EROFS), permission
 *                           denied (EACCES/EPERM)
 * @retval GW_ERR_IO         any other OS error (ENOENT directory, ENOTDIR, EIO...) */
int atomic_file_write(const char *path, const void *data, size_t len, unsigned mode);

/* Reads the whole of `path` into buf[0..cap). *len (may be NULL) receives the byte count.
 * When the content is shorter than cap, buf is NUL-terminated (buf[*len] = 0) so text can be
 * parsed directly; a file of exactly cap bytes fits but is not terminated.
 * @retval GW_OK
 * @retval GW_ERR_INVAL      NULL path/buf or cap 0
 * @retval GW_ERR_NOT_FOUND  the file does not exist
 * @retval GW_ERR_OVERFLOW   the file is larger than cap (buf content unspecified, *len = 0)
 * @retval GW_ERR_STORAGE    permission denied
 * @retval GW_ERR_IO         any other OS error (e.g. path is a directory) */
int atomic_file_read(const char *path, char *buf, size_t cap, size_t *len);

/* Removes the stale temporaries a crash during atomic_file_write(path) may have left
 * (".<name>.tmp-XXXXXX" beside path). Call at start-up only, when no writer of path runs.
 * Returns the number removed (0 when none or the directory cannot be read). */
int atomic_file_cleanup(const char *path);

#endif
