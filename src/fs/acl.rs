//! The POSIX access ACL a `.versions` entry shows.
//!
//! The kernel enforces ACLs itself (FUSE_POSIX_ACL), asking for
//! `system.posix_acl_access`. A version shows the stricter of its old and its
//! file's current permissions (DESIGN §1), never writable; a file whose
//! current ACL shuts a user out must shut them out of its history too. The
//! version's mode is known, its old ACL is not kept: so an entry shows the
//! live file's current ACL narrowed to the entry's permission bits.
//!
//! Format (`linux/posix_acl_xattr.h`): a little-endian u32 version (2), then
//! entries of u16 tag, u16 permission bits, u32 id.

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const GROUP_OBJ: u16 = 0x04;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const WRITE: u16 = 0o2;

/// `acl` (the live file's `system.posix_acl_access`) narrowed to `perm`, the
/// permission bits the entry shows, with write taken from every entry. None
/// if `acl` is not a well-formed ACL.
pub(super) fn narrow(acl: &[u8], perm: u32) -> Option<Vec<u8>> {
    let (head, body) = acl.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*head) != VERSION || body.len() % 8 != 0 {
        return None;
    }
    let class = |shift: u32| ((perm >> shift) & 0o7) as u16;
    let has_mask = body
        .chunks_exact(8)
        .any(|e| u16::from_le_bytes([e[0], e[1]]) == MASK);
    let mut out = acl.to_vec();
    for e in out[4..].chunks_exact_mut(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let mut bits = u16::from_le_bytes([e[2], e[3]]) & !WRITE;
        // The mode's group class is the mask when there is one, else the
        // owning group's entry; named entries are bounded by the mask.
        bits &= match tag {
            USER_OBJ => class(6),
            MASK => class(3),
            GROUP_OBJ if !has_mask => class(3),
            OTHER => class(0),
            _ => 0o7,
        };
        e[2..4].copy_from_slice(&bits.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: u16 = 0x02;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = VERSION.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn entries_lose_write_and_keep_within_the_shown_mode() {
        let live = acl(&[
            (USER_OBJ, 0o7, u32::MAX),
            (USER, 0o6, 1000),
            (GROUP_OBJ, 0o4, u32::MAX),
            (MASK, 0o6, u32::MAX),
            (OTHER, 0o4, u32::MAX),
        ]);
        // An old version that was 0640: others had nothing then.
        let got = narrow(&live, 0o440).unwrap();
        let want = acl(&[
            (USER_OBJ, 0o4, u32::MAX),
            (USER, 0o4, 1000),
            (GROUP_OBJ, 0o4, u32::MAX),
            (MASK, 0o4, u32::MAX),
            (OTHER, 0, u32::MAX),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn a_named_deny_stays_a_deny() {
        let live = acl(&[
            (USER_OBJ, 0o6, u32::MAX),
            (USER, 0, 65534),
            (GROUP_OBJ, 0o4, u32::MAX),
            (MASK, 0o4, u32::MAX),
            (OTHER, 0o4, u32::MAX),
        ]);
        let got = narrow(&live, 0o444).unwrap();
        let want = acl(&[
            (USER_OBJ, 0o4, u32::MAX),
            (USER, 0, 65534),
            (GROUP_OBJ, 0o4, u32::MAX),
            (MASK, 0o4, u32::MAX),
            (OTHER, 0o4, u32::MAX),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(narrow(b"", 0o444), None);
        assert_eq!(narrow(&1u32.to_le_bytes(), 0o444), None);
        assert_eq!(narrow(&acl(&[(USER_OBJ, 6, 0)])[..7], 0o444), None);
    }
}
