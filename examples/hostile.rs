//! Writes the hostile files the tests use into a folder, to try them by hand:
//! `cargo run --release --example hostile -- DIR`, then `sportello ingest DIR`.

use sportello::testdata::hostile;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "hostile".into()));
    std::fs::create_dir_all(&dir).expect("create the folder");
    for (name, bytes) in hostile::all() {
        std::fs::write(dir.join(name), bytes).expect("write a file");
        println!("{}", dir.join(name).display());
    }
}
