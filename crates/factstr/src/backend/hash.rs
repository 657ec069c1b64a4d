//! The one hash whose output is stored on disk or shared between processes.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
///
/// **Stable**: its output is stored on disk (SQLite payload index tokens,
/// claim file names) and shared by processes of different builds
/// (PostgreSQL advisory lock keys and channel names), so it must never
/// change. Not for untrusted keys in hash tables (it is not keyed).
///
/// ```
/// assert_eq!(factstr::backend::fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(factstr::backend::fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    fnv1a_64_continue(FNV_OFFSET_BASIS, bytes)
}

/// 64-bit FNV-1a over `parts`, each followed by a NUL byte, so that
/// `["ab", "c"]` and `["a", "bc"]` differ. Stable like [`fnv1a_64`].
pub fn fnv1a_64_parts(parts: &[&str]) -> u64 {
    parts.iter().fold(FNV_OFFSET_BASIS, |hash, part| {
        fnv1a_64_continue(fnv1a_64_continue(hash, part.as_bytes()), &[0])
    })
}

fn fnv1a_64_continue(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn parts_are_separated() {
        assert_eq!(fnv1a_64_parts(&[]), FNV_OFFSET_BASIS);
        assert_eq!(fnv1a_64_parts(&["a"]), fnv1a_64(b"a\0"));
        assert_ne!(fnv1a_64_parts(&["ab", "c"]), fnv1a_64_parts(&["a", "bc"]));
    }
}
