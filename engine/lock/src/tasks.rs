//! Task lifecycle registry: every long-lived task of a shard registers in a named group with
//! its owner (a connection, a transaction, a subsystem). Counts and ages feed metrics; a task
//! whose owner has ended is a leak; shutdown goes group by group (front ends before the
//! engine's background work) and waits for each group to drain.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("task registry full: {tasks_max} tasks registered (group {group}, owner {owner})")]
    Full {
        tasks_max: usize,
        group: String,
        owner: String,
    },
    #[error("group {group} is shutting down; task {name} of {owner} not started")]
    ShuttingDown {
        group: String,
        owner: String,
        name: String,
    },
}

struct TaskInfo {
    group: String,
    owner: String,
    name: String,
    started: Instant,
    shutdown_waker: Option<Waker>,
}

#[derive(Default)]
struct Group {
    shutting_down: bool,
    tasks: usize,
    empty_wakers: Vec<Waker>,
}

struct Registry {
    tasks: BTreeMap<u64, TaskInfo>,
    groups: BTreeMap<String, Group>,
    ended_owners: HashSet<String>,
    next_id: u64,
    tasks_max: usize,
}

/// Per-group figures for metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    pub group: String,
    pub tasks: usize,
    pub oldest_age_ms: u64,
    pub shutting_down: bool,
}

/// A task that outlived its owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakedTask {
    pub group: String,
    pub owner: String,
    pub name: String,
    pub age_ms: u64,
}

#[derive(Clone)]
pub struct TaskRegistry {
    inner: Rc<RefCell<Registry>>,
}

impl TaskRegistry {
    pub fn new(tasks_max: usize) -> Self {
        TaskRegistry {
            inner: Rc::new(RefCell::new(Registry {
                tasks: BTreeMap::new(),
                groups: BTreeMap::new(),
                ended_owners: HashSet::new(),
                next_id: 0,
                tasks_max,
            })),
        }
    }

    /// Registers a task; keep the guard inside the task (dropping it unregisters).
    pub fn register(&self, group: &str, owner: &str, name: &str) -> Result<TaskGuard, TaskError> {
        let mut reg = self.inner.borrow_mut();
        if reg.tasks.len() >= reg.tasks_max {
            return Err(TaskError::Full {
                tasks_max: reg.tasks_max,
                group: group.to_owned(),
                owner: owner.to_owned(),
            });
        }
        let g = reg.groups.entry(group.to_owned()).or_default();
        if g.shutting_down {
            return Err(TaskError::ShuttingDown {
                group: group.to_owned(),
                owner: owner.to_owned(),
                name: name.to_owned(),
            });
        }
        g.tasks += 1;
        let id = reg.next_id;
        reg.next_id += 1;
        // An owner that registers again (a reused connection id) is alive again.
        reg.ended_owners.remove(owner);
        reg.tasks.insert(
            id,
            TaskInfo {
                group: group.to_owned(),
                owner: owner.to_owned(),
                name: name.to_owned(),
                started: Instant::now(),
                shutdown_waker: None,
            },
        );
        Ok(TaskGuard {
            registry: self.clone(),
            id,
        })
    }

    /// The owner is gone (connection closed, transaction ended): its tasks should be too.
    pub fn owner_ended(&self, owner: &str) {
        self.inner
            .borrow_mut()
            .ended_owners
            .insert(owner.to_owned());
    }

    /// Tasks whose owner has ended.
    pub fn leaks(&self) -> Vec<LeakedTask> {
        let reg = self.inner.borrow();
        let now = Instant::now();
        reg.tasks
            .values()
            .filter(|t| reg.ended_owners.contains(&t.owner))
            .map(|t| LeakedTask {
                group: t.group.clone(),
                owner: t.owner.clone(),
                name: t.name.clone(),
                age_ms: now.saturating_duration_since(t.started).as_millis() as u64,
            })
            .collect()
    }

    pub fn group_stats(&self) -> Vec<GroupStats> {
        let reg = self.inner.borrow();
        let now = Instant::now();
        reg.groups
            .iter()
            .map(|(name, g)| GroupStats {
                group: name.clone(),
                tasks: g.tasks,
                oldest_age_ms: reg
                    .tasks
                    .values()
                    .filter(|t| &t.group == name)
                    .map(|t| now.saturating_duration_since(t.started).as_millis() as u64)
                    .max()
                    .unwrap_or(0),
                shutting_down: g.shutting_down,
            })
            .collect()
    }

    pub fn task_count(&self) -> usize {
        self.inner.borrow().tasks.len()
    }

    /// Signals every task of `group` to stop and refuses new ones; await `drained`.
    pub fn shutdown_group(&self, group: &str) {
        let wakers: Vec<Waker> = {
            let mut reg = self.inner.borrow_mut();
            reg.groups
                .entry(group.to_owned())
                .or_default()
                .shutting_down = true;
            reg.tasks
                .values_mut()
                .filter(|t| t.group == group)
                .filter_map(|t| t.shutdown_waker.take())
                .collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Resolves when `group` has no registered task.
    pub fn drained(&self, group: &str) -> GroupDrained {
        GroupDrained {
            registry: self.clone(),
            group: group.to_owned(),
        }
    }

    fn unregister(&self, id: u64) {
        let wakers = {
            let mut reg = self.inner.borrow_mut();
            let Some(task) = reg.tasks.remove(&id) else {
                return;
            };
            let Some(g) = reg.groups.get_mut(&task.group) else {
                return;
            };
            assert!(g.tasks > 0, "group {} task count underflow", task.group);
            g.tasks -= 1;
            if g.tasks == 0 {
                std::mem::take(&mut g.empty_wakers)
            } else {
                Vec::new()
            }
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Held by a registered task; unregisters on drop.
pub struct TaskGuard {
    registry: TaskRegistry,
    id: u64,
}

impl TaskGuard {
    pub fn is_shutting_down(&self) -> bool {
        let reg = self.registry.inner.borrow();
        reg.tasks
            .get(&self.id)
            .and_then(|t| reg.groups.get(&t.group))
            .is_some_and(|g| g.shutting_down)
    }

    /// Resolves when the task's group is shut down (select on it in the task's loop).
    pub fn shutdown_signal(&self) -> ShutdownSignal<'_> {
        ShutdownSignal { guard: self }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.registry.unregister(self.id);
    }
}

pub struct ShutdownSignal<'a> {
    guard: &'a TaskGuard,
}

impl Future for ShutdownSignal<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.guard.is_shutting_down() {
            return Poll::Ready(());
        }
        let mut reg = self.guard.registry.inner.borrow_mut();
        if let Some(t) = reg.tasks.get_mut(&self.guard.id) {
            t.shutdown_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

pub struct GroupDrained {
    registry: TaskRegistry,
    group: String,
}

impl Future for GroupDrained {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut reg = self.registry.inner.borrow_mut();
        match reg.groups.get_mut(&self.group) {
            Some(g) if g.tasks > 0 => {
                if !g.empty_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    g.empty_wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}
