#![no_main]
// Panics that sportello catches by design (a parser behind catch_unwind) are not crashes.
libfuzzer_sys::fuzz_target!(init: { std::panic::set_hook(Box::new(|info| eprintln!("panic (caught unless the run stops here): {info}"))); }, |data: &[u8]| {
    sportello::fuzzing::pdf_text(data);
});
