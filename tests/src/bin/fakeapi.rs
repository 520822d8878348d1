//! The fake API server as a program, for benchmarks that need several `mzlb serve` replicas
//! on one machine: `fakeapi LISTEN KUBECONFIG [MANIFEST...]` serves on LISTEN (e.g.
//! `127.0.50.70:0`), writes a kubeconfig pointing at itself, seeds the objects of each
//! manifest file, prints `ready`, and serves until killed.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, kubeconfig, manifests @ ..] = &args[..] else {
        eprintln!("usage: fakeapi LISTEN KUBECONFIG [MANIFEST...]");
        std::process::exit(2);
    };
    let api = tests::fakeapi::FakeApi::start(listen);
    // Benchmarks run every process on loopback; a real API server would refuse such slices.
    api.permit_loopback_endpoints();
    api.write_kubeconfig(std::path::Path::new(kubeconfig));
    for file in manifests {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        api.apply_yaml(&text);
    }
    println!("ready");
    loop {
        std::thread::park();
    }
}
