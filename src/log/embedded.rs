//! The embedded durable partitioned command log (see the module docs of `log`).
