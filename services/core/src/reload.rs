//! Data files loaded once per process and replaced, after validation, on
//! `SIGHUP`: the redaction policy here, and whatever a service registers
//! (routing registers its rule set). Everything that reads one reads the
//! process's current version through a [`Shared`] handle, so a worker and the
//! handlers beside it never disagree. A file that fails validation keeps the
//! version in force, and the log says why.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

/// One value the whole process reads, replaced as a whole.
#[derive(Debug)]
pub struct Shared<T>(RwLock<Arc<T>>);

impl<T> Shared<T> {
    /// A handle on `value`.
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    /// The version in force.
    pub fn current(&self) -> Arc<T> {
        match self.0.read() {
            Ok(v) => v.clone(),
            // A writer panicked mid-swap: the value itself is whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `value` in force for every later reader.
    pub fn replace(&self, value: T) {
        match self.0.write() {
            Ok(mut v) => *v = Arc::new(value),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(value),
        }
    }
}

/// What reloading one file did: the version now in force, or why the old one stays.
pub type Outcome = Result<String, String>;

type Hook = Box<dyn Fn() -> Outcome + Send + Sync>;

/// The per-process registry of shared values (one per type) and their reload hooks.
#[derive(Default)]
pub struct Registry {
    values: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    hooks: Mutex<Vec<(&'static str, Hook)>>,
}

impl Registry {
    /// The value of type `T`, made by `init` the first time it is asked for.
    pub fn get_or_init<T: Any + Send + Sync, E>(
        &self,
        init: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = values
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
        {
            return Ok(found);
        }
        let made = Arc::new(init()?);
        values.insert(TypeId::of::<T>(), made.clone());
        Ok(made)
    }

    /// Registers `hook`, run on every reload under `name`.
    pub fn on_reload(
        &self,
        name: &'static str,
        hook: impl Fn() -> Outcome + Send + Sync + 'static,
    ) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, Box::new(hook)));
    }

    /// Runs every hook; each outcome with its name.
    pub fn run_hooks(&self) -> Vec<(&'static str, Outcome)> {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, hook)| (*name, hook()))
            .collect()
    }
}

/// Reloads on every `SIGHUP` until `stop` resolves (Unix; elsewhere it only waits).
pub async fn on_hangup(ctx: crate::AppContext, stop: impl std::future::Future<Output = ()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; data files reload only on restart");
                stop.await;
                return;
            }
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    ctx.reload();
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctx;
        stop.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type_and_hooks_report_each_outcome() {
        let registry = Registry::default();
        let a = registry
            .get_or_init(|| Ok::<_, ()>(Shared::new(1_u32)))
            .unwrap();
        let b = registry
            .get_or_init(|| Ok::<_, ()>(Shared::new(2_u32)))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the first value is the process's");
        let handle = a.clone();
        registry.on_reload("number", move || {
            handle.replace(*handle.current() + 1);
            Ok(format!("now {}", handle.current()))
        });
        registry.on_reload("broken", || Err("bad file".into()));
        let outcomes = registry.run_hooks();
        assert_eq!(
            outcomes,
            vec![
                ("number", Ok("now 2".into())),
                ("broken", Err("bad file".into()))
            ]
        );
        assert_eq!(*b.current(), 2);
    }
}
