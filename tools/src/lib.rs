//! refnet's development tools, kept out of the product library: the load
//! tool ([`bench`], `refnet bench`), the seed ([`seed`], `refnet seed`), the
//! synthetic fixtures every test and benchmark files ([`fixtures`]) and the
//! database's own insert rate as a baseline ([`insert_baseline`]), and development
//! certificates ([`certs`], `refnet keys dev-tls`, `refnet bench --tls`).

pub mod bench;
pub mod certs;
pub mod fixtures;
pub mod insert_baseline;
pub mod seed;
