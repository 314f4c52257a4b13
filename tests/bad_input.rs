//! Bad settings, environment, AWS state and templates through the real `xtask-aws` binary.
