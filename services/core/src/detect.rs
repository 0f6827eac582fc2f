//! placeholder: the free-text detector (see detect.rs docs)
