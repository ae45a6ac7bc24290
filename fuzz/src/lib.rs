//! The fuzz targets' shared invariants (see `checks`).

pub mod checks;
