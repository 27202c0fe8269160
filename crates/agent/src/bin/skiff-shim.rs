//! A stand-alone shim binary for tests: `skiff-shim ARGS` is `skiff shim ARGS`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(skiff_agent::runtime::shim::shim_main(&args));
}
