//! `rekey`: the command line and server of the rekey key-renewal orchestrator.

fn main() {}
