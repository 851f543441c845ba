# Sourced by the bench scripts: where the plain directory and the mount's
# backing directory live, chosen with `--backing`.
#
#   disk  a fresh directory under /var/tmp (this VM's disk; it swings 3x
#         between runs and slows creates after mass deletes)
#   shm   a fresh ext4 on a loop file in /dev/shm: RAM-backed, so the ratios
#         show the CPU cost of ckptfs alone
#   DIR   a fresh directory under DIR
#
# backing_setup KIND SIZE_MIB TAG sets BACKING (a fresh empty directory, both
# the native and the mounted side go under it: one filesystem for both) and
# BACKING_DESC. backing_cleanup undoes it; call it last in the script's cleanup.

BACKING=""
BACKING_DESC=""
_backing_loop=""
_backing_img=""

backing_setup() {
    local kind=$1 size_mib=$2 tag=$3
    case $kind in
        shm)
            _backing_img=$(mktemp "/dev/shm/ckptfs-$tag.XXXXXX.img")
            truncate -s "${size_mib}M" "$_backing_img"
            # Inodes for the file-tree rows, their tables written now: lazy
            # init zeroes them in the background during the first minutes,
            # inside the timed rows.
            mkfs.ext4 -q -F -m 0 -i 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$_backing_img"
            _backing_loop=$(mktemp -d "/tmp/ckptfs-$tag-fs.XXXXXX")
            mount -o loop "$_backing_img" "$_backing_loop"
            BACKING=$_backing_loop/bench
            BACKING_DESC="RAM-backed ext4 (${size_mib} MiB loop file in /dev/shm)"
            ;;
        disk) BACKING=$(mktemp -d "/var/tmp/ckptfs-$tag.XXXXXX"); BACKING_DESC="VM disk ($(df --output=fstype /var/tmp | tail -1) at /var/tmp)" ;;
        /*) BACKING=$(mktemp -d "$kind/ckptfs-$tag.XXXXXX"); BACKING_DESC="$kind ($(df --output=fstype "$kind" | tail -1))" ;;
        *) echo "--backing: expected disk, shm or an absolute directory, got '$kind'" >&2; exit 2 ;;
    esac
    mkdir -p "$BACKING"
}

backing_cleanup() {
    [ -n "$BACKING" ] && rm -rf "$BACKING"
    if [ -n "$_backing_loop" ]; then
        umount "$_backing_loop" 2>/dev/null || umount -l "$_backing_loop"
        rmdir "$_backing_loop"
    fi
    [ -n "$_backing_img" ] && rm -f "$_backing_img"
    BACKING=""
}
