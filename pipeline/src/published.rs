//! A value published by one thread and read by others without a lock on the read path.
//!
//! The writer replaces the whole value (an `Arc`) and bumps a generation; a reader keeps its own
//! `Arc` and only takes the mutex when the generation moved, i.e. about once per change (an SNMP
//! poll interval), never per record. `arc-swap` does the same; this is 40 lines on std.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The shared slot.
#[derive(Debug, Default)]
pub struct Published<T> {
    generation: AtomicU64,
    slot: Mutex<Arc<T>>,
}

impl<T: Default> Published<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Published {
            generation: AtomicU64::new(0),
            slot: Mutex::new(Arc::new(T::default())),
        })
    }
}

impl<T> Published<T> {
    /// Replace the value.
    pub fn publish(&self, value: T) {
        if let Ok(mut g) = self.slot.lock() {
            *g = Arc::new(value);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A reader starting from the current value.
    pub fn reader(self: &Arc<Self>) -> PublishedReader<T> {
        let current = self.slot.lock().map(|g| g.clone()).ok();
        PublishedReader {
            seen: self.generation.load(Ordering::Acquire),
            current,
            source: self.clone(),
        }
    }
}

/// One reader's view; `get` is one atomic load unless the value changed.
#[derive(Debug)]
pub struct PublishedReader<T> {
    seen: u64,
    current: Option<Arc<T>>,
    source: Arc<Published<T>>,
}

impl<T> PublishedReader<T> {
    pub fn get(&mut self) -> Option<&T> {
        let g = self.source.generation.load(Ordering::Acquire);
        if g != self.seen
            && let Ok(slot) = self.source.slot.lock()
        {
            self.current = Some(slot.clone());
            self.seen = g;
        }
        self.current.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_new_values() {
        let p: Arc<Published<u32>> = Published::new();
        let mut r = p.reader();
        assert_eq!(r.get(), Some(&0));
        p.publish(7);
        assert_eq!(r.get(), Some(&7));
        let mut r2 = p.reader();
        assert_eq!(r2.get(), Some(&7));
    }
}
