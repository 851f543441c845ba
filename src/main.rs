fn main() -> std::process::ExitCode {
    ckptfs::cli::main()
}
