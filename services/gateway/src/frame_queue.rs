//! A first-in first-out queue of frames that holds one frame without
//! allocating: between writes most connections have nothing or a single
//! frame queued, and only a backlog takes a buffer (freed once drained).

use std::collections::VecDeque;

use crate::frame::Frame;

/// Queued frames, oldest first: `first`, then `rest`.
#[derive(Debug, Default)]
pub struct FrameQueue {
    first: Option<Frame>,
    rest: VecDeque<Frame>,
}

impl FrameQueue {
    /// Number of frames.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Appends a frame.
    pub fn push_back(&mut self, frame: Frame) {
        if self.first.is_none() {
            self.first = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
    }

    /// Puts `front` before these frames.
    pub fn prepend(&mut self, mut front: FrameQueue) {
        if front.is_empty() {
            return;
        }
        std::mem::swap(self, &mut front);
        for frame in front {
            self.push_back(frame);
        }
    }

    /// The frames, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Frame> {
        self.first.iter().chain(self.rest.iter())
    }

    /// The frames, oldest first, to change in place.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Frame> {
        self.first.iter_mut().chain(self.rest.iter_mut())
    }

    /// Drops the `n` oldest frames.
    pub fn drain_front(&mut self, n: usize) {
        for _ in 0..n {
            self.first = self.rest.pop_front();
            if self.first.is_none() {
                break;
            }
        }
        if self.rest.is_empty() {
            self.rest = VecDeque::new();
        }
    }

    /// Keeps the `n` oldest frames.
    pub fn truncate(&mut self, n: usize) {
        if n == 0 {
            *self = FrameQueue::default();
        } else {
            self.rest.truncate(n - 1);
        }
    }
}

impl IntoIterator for FrameQueue {
    type Item = Frame;
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<Frame>,
        std::collections::vec_deque::IntoIter<Frame>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;

    fn names(q: &FrameQueue) -> Vec<&[u8]> {
        q.iter().map(Frame::json).collect()
    }

    fn json(s: &'static [u8]) -> Frame {
        Frame::Json(Bytes::from_static(s))
    }

    #[test]
    fn keeps_order_and_allocates_only_for_a_backlog() {
        let mut q = FrameQueue::default();
        q.push_back(json(b"a"));
        assert_eq!((q.len(), q.rest.capacity()), (1, 0), "one frame, no buffer");
        q.push_back(json(b"b"));
        q.push_back(json(b"c"));
        assert_eq!(names(&q), [b"a", b"b", b"c"]);
        q.drain_front(2);
        assert_eq!(names(&q), [b"c"]);
        assert_eq!(
            q.rest.capacity(),
            0,
            "buffer freed once the backlog is gone"
        );
        q.push_back(json(b"d"));
        q.truncate(1);
        assert_eq!(names(&q), [b"c"]);
        q.drain_front(5);
        assert!(q.is_empty());
        q.push_back(json(b"e"));
        q.push_back(json(b"f"));
        let all: Vec<Frame> = q.into_iter().collect();
        assert_eq!(
            all.iter().map(Frame::json).collect::<Vec<_>>(),
            [b"e", b"f"]
        );
    }
}
