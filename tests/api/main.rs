//! Integration tests over real HTTP on port 0.

mod cli;
mod errors;
mod health;
mod helpers;
mod reload;
mod token;
