//! One integration-test binary, split by topic, over a shared harness.

mod harness;

mod cli;
mod console;
mod isolation;
mod limits;
mod results;
mod scripts;
mod tools;
