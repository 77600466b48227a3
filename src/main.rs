//! The backstop binary: everything happens in the library's `cli` module.

fn main() -> std::process::ExitCode {
    backstop::cli::run()
}
