//! The deterministic simulator driver.
