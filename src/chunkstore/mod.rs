//! Chunk placement on disk (segment files, chunk records, index, reclaim,
//! scrubbing). Built by the storage-engine issue; empty until then.
