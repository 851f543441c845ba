# Sourced by the scripts that build libfuse's examples from Debian sources.
#
# deb_source WORK SUITE PACKAGE: download and unpack PACKAGE's upstream source
# from SUITE (e.g. the system's own codename, or sid) into WORK, through a
# private apt source list: the system's apt configuration is not touched.
# Debian only (Ubuntu's archive serves the system's own codename). Needs root.
deb_source() {
    local work=$1 suite=$2 pkg=$3 mirror
    . /etc/os-release
    case "$ID" in
        debian) mirror=http://deb.debian.org/debian ;;
        ubuntu) mirror=http://archive.ubuntu.com/ubuntu ;;
        *) echo "deb_source: unsupported distribution $ID" >&2; return 2 ;;
    esac
    mkdir -p "$work/lists/partial"
    echo "deb-src $mirror $suite main" > "$work/src.list"
    local opts=(-o "Dir::Etc::SourceList=$work/src.list" -o Dir::Etc::SourceParts=/dev/null
                -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -qq
    (cd "$work" && apt-get "${opts[@]}" source -qq --download-only "$pkg" >/dev/null)
    tar -C "$work" -xf "$(ls "$work/${pkg}"_*.orig.tar.* | grep -v "\.asc$")"
}
