//! File helpers both glommio drivers (`storage.rs`, `chunks.rs`) share:
//! zero-filling a pre-allocated file and syncing a directory after a rename.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::rc::Rc;

use glommio::io::DmaFile;
use glommio::GlommioError;

/// Zero-fill writes go out in pieces of this size...
const FORMAT_WRITE_SIZE: u64 = 4 << 20;
/// ...this many at a time.
const FORMAT_WRITES_IN_FLIGHT: usize = 8;

/// Write zeros over `[0, total)`, `FORMAT_WRITES_IN_FLIGHT` at a time, all
/// from one shared buffer.
pub(crate) async fn zero_fill(file: &Rc<DmaFile>, total: u64) -> io::Result<()> {
    let mut zeros = file.alloc_dma_buffer(FORMAT_WRITE_SIZE as usize);
    zeros.as_bytes_mut().fill(0);
    let zeros = Rc::new(zeros);
    let mut tasks = VecDeque::with_capacity(FORMAT_WRITES_IN_FLIGHT);
    let mut offset = 0u64;
    while offset < total {
        let size = (total - offset).min(FORMAT_WRITE_SIZE);
        let buffer = if size == FORMAT_WRITE_SIZE {
            zeros.clone()
        } else {
            let mut tail = file.alloc_dma_buffer(size as usize);
            tail.as_bytes_mut().fill(0);
            Rc::new(tail)
        };
        let file = file.clone();
        tasks.push_back(glommio::spawn_local(async move {
            let written = file.write_rc_at(buffer, offset).await.map_err(io_error_of)?;
            written_whole(written, size, offset)
        }));
        if tasks.len() == FORMAT_WRITES_IN_FLIGHT {
            if let Some(task) = tasks.pop_front() {
                task.await?;
            }
        }
        offset += size;
    }
    for task in tasks {
        task.await?;
    }
    Ok(())
}

/// O_DIRECT writes of aligned sizes inside the allocated file are never
/// short on ext4/xfs; if one is, its fate is unknown.
pub(crate) fn written_whole(written: usize, size: u64, at: u64) -> io::Result<()> {
    if written as u64 != size {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {written} of {size} bytes at {at}"),
        ));
    }
    Ok(())
}

/// Make a rename in `dir` durable.
pub(crate) fn sync_directory(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// glommio wraps an errno in `EnhancedIoError`, and its conversion to
/// `io::Error` keeps only the kind: keep the errno, the path is ours.
pub(crate) fn io_error_of(error: GlommioError<()>) -> io::Error {
    match error {
        GlommioError::IoError(error) => error,
        GlommioError::EnhancedIoError { source, .. } => source,
        other => other.into(),
    }
}
