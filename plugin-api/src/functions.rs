//! Typed, named functions: what a plugin registers in [`Plugin::functions`](crate::Plugin::functions)
//! and how a call by name reaches one (JSON in, serde into the typed input, the typed output out
//! as JSON).
//!
//! A function is a method with one of two shapes, checked by the compiler:
//!
//! - `fn name(&mut self, ctx: &Context, input: In) -> Result<Out>`, registered with
//!   [`Functions::add`]: runs alone (no other call of the plugin runs meanwhile);
//! - `fn name(&self, ctx: &Context, input: In) -> Result<Out>`, registered with
//!   [`Functions::add_shared`]: in a plugin exported as `concurrent`, runs next to other shared
//!   calls on the host's pool.
//!
//! with `In: DeserializeOwned` and `Out: Serialize`. Anything else does not compile:
//!
//! ```compile_fail
//! use plugin_api::{Context, Functions, Result};
//! struct P;
//! impl P {
//!     // The input is missing its context argument: not a function shape.
//!     fn greet(&mut self, name: String) -> Result<String> { Ok(name) }
//! }
//! fn register(f: &mut Functions<P>) {
//!     f.add("greet", P::greet);
//! }
//! ```
//!
//! ```compile_fail
//! use plugin_api::{Context, Functions, Result};
//! struct P;
//! struct NotSerde;
//! impl P {
//!     // The output cannot be serialised.
//!     fn greet(&mut self, _: &Context, name: String) -> Result<NotSerde> { Ok(NotSerde) }
//! }
//! fn register(f: &mut Functions<P>) {
//!     f.add("greet", P::greet);
//! }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Context, Error, Result};

type Exclusive<P> = Box<dyn Fn(&mut P, &Context, &[u8]) -> Result<Vec<u8>> + Send + Sync>;
type Shared<P> = Box<dyn Fn(&P, &Context, &[u8]) -> Result<Vec<u8>> + Send + Sync>;

/// How a registered function runs.
pub(crate) enum Entry<P> {
    /// Takes `&mut self`: runs alone.
    Exclusive(Exclusive<P>),
    /// Takes `&self`: may run next to other shared calls.
    Shared(Shared<P>),
}

/// The typed functions of a plugin type, registered once per instance by
/// [`Plugin::functions`](crate::Plugin::functions).
///
/// ```
/// use plugin_api::{Context, Functions, Result};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct Who { name: String }
/// #[derive(Serialize)]
/// struct Greeting { greeting: String }
///
/// struct Hello { calls: u64 }
/// impl Hello {
///     fn greet(&mut self, _ctx: &Context, who: Who) -> Result<Greeting> {
///         self.calls += 1;
///         Ok(Greeting { greeting: format!("hello, {}", who.name) })
///     }
///     fn count(&self, _ctx: &Context, _: ()) -> Result<u64> {
///         Ok(self.calls)
///     }
/// }
/// fn register(f: &mut Functions<Hello>) {
///     f.add("greet", Hello::greet).add_shared("count", Hello::count);
/// }
/// ```
pub struct Functions<P> {
    entries: Vec<(&'static str, Entry<P>)>,
    duplicates: Vec<&'static str>,
}

impl<P> std::fmt::Debug for Functions<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(name, _)| name))
            .finish()
    }
}

fn decode<In: DeserializeOwned>(name: &str, input: &[u8]) -> Result<In> {
    serde_json::from_slice(input).map_err(|e| {
        Error::new(
            "bad_request",
            format!("input of function `{name}` does not fit its type: {e}"),
        )
    })
}

impl<P: 'static> Functions<P> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
            duplicates: Vec::new(),
        }
    }

    fn push(&mut self, name: &'static str, entry: Entry<P>) -> &mut Self {
        if self.entries.iter().any(|(n, _)| *n == name) {
            self.duplicates.push(name);
        } else {
            self.entries.push((name, entry));
        }
        self
    }

    /// Registers a `&mut self` function under `name` (declared in the manifest too).
    pub fn add<In, Out, F>(&mut self, name: &'static str, function: F) -> &mut Self
    where
        In: DeserializeOwned,
        Out: Serialize,
        F: Fn(&mut P, &Context, In) -> Result<Out> + Send + Sync + 'static,
    {
        let run = move |plugin: &mut P, ctx: &Context, input: &[u8]| {
            let output = function(plugin, ctx, decode(name, input)?)?;
            Ok(serde_json::to_vec(&output)?)
        };
        self.push(name, Entry::Exclusive(Box::new(run)))
    }

    /// Registers a `&self` function under `name` (declared in the manifest too). In a plugin
    /// exported with `export_plugin!(Type, concurrent)` it runs concurrently with other shared
    /// calls; in any plugin it may be used for functions that only read.
    pub fn add_shared<In, Out, F>(&mut self, name: &'static str, function: F) -> &mut Self
    where
        In: DeserializeOwned,
        Out: Serialize,
        F: Fn(&P, &Context, In) -> Result<Out> + Send + Sync + 'static,
    {
        let run = move |plugin: &P, ctx: &Context, input: &[u8]| {
            let output = function(plugin, ctx, decode(name, input)?)?;
            Ok(serde_json::to_vec(&output)?)
        };
        self.push(name, Entry::Shared(Box::new(run)))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Entry<P>> {
        self.entries
            .iter()
            .find_map(|(n, entry)| (*n == name).then_some(entry))
    }

    /// Checks the registered set against the manifest's declared set: the same names, each
    /// once.
    ///
    /// # Errors
    /// `function_mismatch` naming the first function registered twice, declared but not
    /// registered, or registered but not declared.
    pub(crate) fn check(&self, declared: &[crate::Function]) -> Result<()> {
        let mismatch = |name: &str, what: &str| {
            Err(Error::new(
                "function_mismatch",
                format!("function `{name}` {what}"),
            ))
        };
        if let Some(name) = self.duplicates.first() {
            return mismatch(name, "is registered twice");
        }
        if let Some(f) = declared.iter().find(|f| self.get(f.name).is_none()) {
            return mismatch(
                f.name,
                "is declared in the manifest but not registered in `functions`",
            );
        }
        if let Some((name, _)) = self
            .entries
            .iter()
            .find(|(n, _)| !declared.iter().any(|f| f.name == *n))
        {
            return mismatch(
                name,
                "is registered in `functions` but not declared in the manifest",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Function;

    struct P;
    impl P {
        fn a(&mut self, _: &Context, _: ()) -> Result<()> {
            Ok(())
        }
        fn b(&self, _: &Context, _: u32) -> Result<u32> {
            Ok(1)
        }
    }

    #[test]
    fn check_names_the_function_at_fault() {
        let mut f = Functions::<P>::new();
        f.add("a", P::a).add_shared("b", P::b);
        f.check(&[Function::new("a"), Function::new("b")]).unwrap();
        let e = f.check(&[Function::new("a")]).unwrap_err();
        assert_eq!(e.code, "function_mismatch");
        assert!(e.message.contains("`b`"), "{e}");
        let e = f
            .check(&[Function::new("a"), Function::new("b"), Function::new("c")])
            .unwrap_err();
        assert!(e.message.contains("`c`"), "{e}");
        f.add("a", P::a);
        let e = f
            .check(&[Function::new("a"), Function::new("b")])
            .unwrap_err();
        assert!(e.message.contains("twice"), "{e}");
    }
}
