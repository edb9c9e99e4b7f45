//! nginx's event loop, as the module uses it outside requests (FFI): descriptors watched for
//! reads and the timerfd that paces worker 0 (`LoopFd`), work continued on the next turn of the
//! loop (`PostedEvent`), and a gracefully exiting worker held while such work lasts
//! (`HoldWorker`). Used by worker 0's driver and by sliced scrapes.

#[cfg(not(test))]
pub(crate) mod loop_fd;
