//! Randomness from the OS for the drivers (session ids, chunk ids, replica
//! seeds); the sans-IO cores only ever get it as a seed.

/// 128 bits from /dev/urandom, mixed with the clock and the process id so
/// that even a failed read gives distinct values per process and call.
pub fn random_u128() -> u128 {
    let mut bytes = [0u8; 16];
    if let Ok(mut file) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut file, &mut bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    u128::from_le_bytes(bytes) ^ nanos ^ (u128::from(std::process::id()) << 96)
}
