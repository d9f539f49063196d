use std::process::ExitCode;

fn main() -> ExitCode {
    sportello::cli::main()
}
