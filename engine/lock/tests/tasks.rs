#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::rc::Rc;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use mantis_lock::{TaskError, TaskRegistry};

#[test]
fn groups_count_tasks_detect_leaks_and_shut_down_in_order() {
    let reg = TaskRegistry::new(16);
    let mut pool = LocalPool::new();
    let stopped = Rc::new(Cell::new(0u32));
    for (group, owner) in [
        ("resp", "conn-1"),
        ("resp", "conn-2"),
        ("compaction", "shard-0"),
    ] {
        let guard = reg.register(group, owner, "loop").unwrap();
        let stopped = stopped.clone();
        pool.spawner()
            .spawn_local(async move {
                guard.shutdown_signal().await;
                stopped.set(stopped.get() + 1);
                drop(guard);
            })
            .unwrap();
    }
    pool.run_until_stalled();
    let stats = reg.group_stats();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats.iter().find(|g| g.group == "resp").unwrap().tasks, 2);
    assert!(reg.leaks().is_empty());
    reg.owner_ended("conn-2");
    let leaks = reg.leaks();
    assert_eq!(leaks.len(), 1);
    assert_eq!(leaks[0].owner, "conn-2");

    reg.shutdown_group("resp");
    assert!(matches!(
        reg.register("resp", "conn-3", "loop"),
        Err(TaskError::ShuttingDown { .. })
    ));
    let drained = Rc::new(Cell::new(false));
    let d = drained.clone();
    let r2 = reg.clone();
    pool.spawner()
        .spawn_local(async move {
            r2.drained("resp").await;
            d.set(true);
        })
        .unwrap();
    pool.run_until_stalled();
    assert!(drained.get());
    assert_eq!(stopped.get(), 2, "only the resp group stopped");
    assert_eq!(reg.task_count(), 1);
    reg.shutdown_group("compaction");
    pool.run_until_stalled();
    assert_eq!(reg.task_count(), 0);
}

#[test]
fn registry_limit_is_enforced() {
    let reg = TaskRegistry::new(2);
    let _a = reg.register("g", "o", "a").unwrap();
    let _b = reg.register("g", "o", "b").unwrap();
    assert!(matches!(
        reg.register("g", "o", "c"),
        Err(TaskError::Full { tasks_max: 2, .. })
    ));
}
