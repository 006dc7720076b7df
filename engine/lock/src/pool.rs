//! A slab of reusable records with a free list. Records keep their inner buffers (Vec capacity)
//! across reuse, which is what makes the steady state allocation-free. A generation per slot
//! lets handles held by futures detect that their record was recycled.

pub(crate) struct Pool<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    slots_max: usize,
}

struct Slot<T> {
    generation: u32,
    in_use: bool,
    value: T,
}

impl<T: Default> Pool<T> {
    pub(crate) fn new(slots_max: usize) -> Self {
        Pool {
            slots: Vec::new(),
            free: Vec::new(),
            slots_max,
        }
    }

    /// A free slot (its previous contents are left for the caller to overwrite), or `None` when
    /// `slots_max` records are in use.
    #[inline]
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        let idx = if let Some(idx) = self.free.pop() {
            idx
        } else {
            if self.slots.len() >= self.slots_max {
                return None;
            }
            self.slots.push(Slot {
                generation: 0,
                in_use: false,
                value: T::default(),
            });
            u32::try_from(self.slots.len() - 1).ok()?
        };
        let slot = &mut self.slots[idx as usize];
        assert!(!slot.in_use, "pool slot {idx} handed out twice");
        slot.in_use = true;
        Some(idx)
    }

    #[inline]
    pub(crate) fn free(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        assert!(slot.in_use, "pool slot {idx} freed twice");
        slot.in_use = false;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(idx);
    }

    pub(crate) fn generation(&self, idx: u32) -> u32 {
        self.slots[idx as usize].generation
    }

    pub(crate) fn is_live(&self, idx: u32, generation: u32) -> bool {
        self.slots
            .get(idx as usize)
            .is_some_and(|s| s.in_use && s.generation == generation)
    }

    /// Records in use: every slot created and not on the free list.
    pub(crate) fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Slots ever created: the pool's high-water mark.
    pub(crate) fn allocated(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn iter_live(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.in_use)
            .map(|(i, s)| (i as u32, &s.value))
    }
}

impl<T> std::ops::Index<u32> for Pool<T> {
    type Output = T;
    #[inline]
    fn index(&self, idx: u32) -> &T {
        let slot = &self.slots[idx as usize];
        debug_assert!(slot.in_use, "pool slot {idx} read while free");
        &slot.value
    }
}

impl<T> std::ops::IndexMut<u32> for Pool<T> {
    #[inline]
    fn index_mut(&mut self, idx: u32) -> &mut T {
        let slot = &mut self.slots[idx as usize];
        debug_assert!(slot.in_use, "pool slot {idx} written while free");
        &mut slot.value
    }
}
