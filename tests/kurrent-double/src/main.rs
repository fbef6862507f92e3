//! Runs the double as a stand-in server on the loopback interface, for trying the ledger (or the
//! real-server test suite) against the EventStoreDB adapter without a server:
//!
//! ```text
//! cargo run -p eventstore-double -- 2113
//! EVENTSTORE_URL='esdb://127.0.0.1:2113?tls=false' cargo test -p ledger-tests --test kurrent_real_server
//! ```

use ledger_kurrent_double::EventStoreDouble;

/// The port EventStoreDB and KurrentDB listen on by default.
const DEFAULT_PORT: u16 = 2113;

fn main() {
    let port = match std::env::args().nth(1) {
        None => DEFAULT_PORT,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("usage: eventstore-double [PORT]   ({text:?} is not a port number)");
            std::process::exit(2);
        }),
    };
    let double = EventStoreDouble::start_on_port(port).unwrap_or_else(|error| {
        eprintln!("cannot listen on 127.0.0.1:{port}: {error}");
        std::process::exit(1);
    });
    println!("{}", double.url());
    // Serve until the process is killed; the server runs on its own thread.
    loop {
        std::thread::park();
    }
}
