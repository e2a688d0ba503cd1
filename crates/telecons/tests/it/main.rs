//! The integration tests of telecons, in one binary: the store suite (run on SQLite and on
//! PostgreSQL by the same code) and black-box HTTP tests of the running app.
//!
//! PostgreSQL tests run when `TELECONS_TEST_POSTGRES_URL` names a server (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own database there
//! and drops it afterwards. Without the variable they are built as ignored (`build.rs`), so
//! the summary says how many did not run; `.ci/run` always sets it.

mod support;
// The bearer unit tests' issuer, by path: the library's `#[cfg(test)]` code is not visible
// here. Some of it only the unit tests use.
#[allow(dead_code)]
#[path = "../../src/identity/bearer/test_issuer.rs"]
mod test_issuer;

mod access;
mod agenda_list;
mod agenda_memory;
mod agenda_view;
mod bearer;
mod browser;
mod budget;
mod cli;
mod connections;
mod crash;
mod credentials;
mod deploy;
mod directory;
mod events;
mod events_delivery;
mod idempotency;
mod join_page;
mod ops;
mod provisioning;
mod raw_http;
mod settings;
mod store;
mod teleconsultations;
mod webhooks;
