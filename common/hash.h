/* hash.h: xxHash, header-only (XXH_INLINE_ALL), the one checksum and fingerprint of tally.
 *
 * Debian's libxxhash is used as a header: the inlined XXH3 is several times faster than the
 * packaged shared library's on small inputs. XXH3 catches corruption and divergence; it is not a
 * defence against someone who can rewrite the data (see BRIEF §3).
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#define XXH_INLINE_ALL
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#endif
