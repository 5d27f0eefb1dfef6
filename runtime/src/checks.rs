//! Compile-time checks behind `#[workflow]` and `#[step]`, and the input and output
//! codecs that come with them.
//!
//! The macros emit, spanned on each argument or result type, a call such as
//! `workflow_input::<OrderId>()`. Its bound is one of the marker traits below, whose
//! `#[diagnostic::on_unimplemented]` says why the type must have the property and how
//! to give it one. Each blanket impl is `#[diagnostic::do_not_recommend]`, so rustc
//! reports the marker trait itself (one error, with our message) rather than each
//! missing serde trait separately. The checks return codecs built where the bound
//! holds, so the generated encode and decode code carries no bound of its own and a
//! failed check is the only error the user sees. A step reaches `run_step_with`, whose
//! own bounds would fail a second time, through [`StepRunner`]: method resolution
//! picks [`RunCheckedStep::run`] when the bounds hold and otherwise the bound-free
//! [`RunUncheckedStep::run`], which only ever exists in a build that the failed check
//! stops.

use std::fmt::Display;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::registry::{Outcome, StepSpec};

/// A type a workflow can take as an argument.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored as a workflow input: derive `Serialize` and `Deserialize` for it",
    label = "recorded as JSON when the workflow starts",
    note = "workflow arguments are recorded as JSON in PostgreSQL and decoded on recovery, so each must be `Serialize + DeserializeOwned + Send + 'static`: derive `serde::Serialize` and `serde::Deserialize` for it"
)]
pub trait WorkflowInput: Serialize + DeserializeOwned + Send + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> WorkflowInput for T {}

/// A type a workflow can return as `Ok`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored as a workflow output: derive `Serialize` and `Deserialize` for it",
    label = "recorded as JSON when the workflow succeeds",
    note = "a workflow's output is recorded as JSON in PostgreSQL and decoded by whoever awaits it, possibly in another process, so it must be `Serialize + DeserializeOwned + Send + 'static`: derive `serde::Serialize` and `serde::Deserialize` for it"
)]
pub trait WorkflowOutput: Serialize + DeserializeOwned + Send + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> WorkflowOutput for T {}

/// A type a workflow can return as `Err`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a workflow: implement `From<exactly::Error>` and `Display` for it",
    label = "must be `Display + From<exactly::Error> + Send + 'static`",
    note = "a workflow's error is recorded as text (its `Display`), and a caller awaiting the workflow receives the runtime's own failures (and the recorded error) as `exactly::Error`: implement `Display` and `From<exactly::Error>` for it, or return `exactly::Result<T>`"
)]
pub trait WorkflowError: Display + From<Error> + Send + 'static {}

#[diagnostic::do_not_recommend]
impl<E: Display + From<Error> + Send + 'static> WorkflowError for E {}

/// A type a step can return as `Ok`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be recorded as a step output: derive `Serialize` and `Deserialize` for it",
    label = "recorded as JSON when the step completes",
    note = "a step's output is recorded as JSON in PostgreSQL and, on recovery, decoded from there instead of running the step again, so it must be `Serialize + DeserializeOwned`: derive `serde::Serialize` and `serde::Deserialize` for it"
)]
pub trait StepOutput: Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> StepOutput for T {}

/// A type a step can return as `Err`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a step: implement `From<exactly::Error>` and `Display` for it",
    label = "must be `Display + From<exactly::Error>`",
    note = "a step's failure is recorded as text (its `Display`) and replayed on recovery as `exactly::Error::StepFailed`, which reaches the step's caller through `From<exactly::Error>`: implement `Display` and `From<exactly::Error>` for it, or return `exactly::Result<T>`"
)]
pub trait StepError: Display + From<Error> {}

#[diagnostic::do_not_recommend]
impl<E: Display + From<Error>> StepError for E {}

/// An argument of a step with `retries > 0`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must be `Clone` because this step is retried: derive `Clone`, take it by reference, or set `retries = 0`",
    label = "passed again to every attempt",
    note = "a step with `retries > 0` runs again after a failure and gets its arguments anew for each attempt: derive `Clone` for it, take it by reference, or set `retries = 0`"
)]
pub trait RetriedStepArgument: Clone {}

#[diagnostic::do_not_recommend]
impl<T: Clone> RetriedStepArgument for T {}

/// The `Ok` and `Err` types of a function's declared return type, which may be an
/// alias such as `exactly::Result<T>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Result`: return `Result<T, E>`",
    label = "declared return type",
    note = "workflows and steps return `std::result::Result<T, E>` (or an alias of it): the runtime records either the output or the error"
)]
pub trait ReturnsResult {
    /// `T`.
    type Ok;
    /// `E`.
    type Err;
}

impl<T, E> ReturnsResult for Result<T, E> {
    type Ok = T;
    type Err = E;
}

/// Checks that `T` can be a workflow argument; returns how to encode and decode it.
pub fn workflow_input<T: WorkflowInput>() -> InputCodec<T> {
    InputCodec {
        encode: |value, json| serde_json::to_writer(json, value),
        decode: |json| {
            let mut values = serde_json::Deserializer::from_str(json).into_iter::<T>();
            match values.next() {
                Some(value) => (value, values.byte_offset()),
                None => (Err(serde::de::Error::custom("missing value")), 0),
            }
        },
    }
}

/// Checks that `T` can be a workflow's output; returns how to encode it.
pub fn workflow_output<T: WorkflowOutput>() -> OutputCodec<T> {
    OutputCodec { encode: |value| serde_json::to_string(value) }
}

/// Checks that `E` can be a workflow's error; returns how to record it.
pub fn workflow_error<E: WorkflowError>() -> ErrorCodec<E> {
    ErrorCodec { message: |error| error.to_string() }
}

/// Checks that `T` can be a step's output.
pub fn step_output<T: StepOutput>() {}

/// Checks that `E` can be a step's error.
pub fn step_error<E: StepError>() {}

/// Checks that `T` can be passed to every attempt of a retried step; returns its clone.
pub fn retried_step_argument<T: RetriedStepArgument>() -> fn(&T) -> T {
    T::clone
}

/// [`retried_step_argument`] for an argument whose type cannot be named (`impl Trait`).
pub fn retried_step_argument_of<T: RetriedStepArgument>(_: &T) -> fn(&T) -> T {
    T::clone
}

/// Runs a step whose output is `T` and whose error is `E`; see the module docs.
pub struct StepRunner<T, E>(PhantomData<fn() -> (T, E)>);

impl<T, E> StepRunner<T, E> {
    /// The runner for `Result<T, E>`.
    pub const fn new() -> Self {
        StepRunner(PhantomData)
    }
}

impl<T, E> Default for StepRunner<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

/// Chosen when the step's types pass their checks: runs the step.
pub trait RunCheckedStep<T, E> {
    /// [`run_step_with`](crate::run_step_with).
    fn run<F, Fut>(&self, spec: &'static StepSpec, f: F) -> impl Future<Output = Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>;
}

impl<T: StepOutput, E: StepError> RunCheckedStep<T, E> for StepRunner<T, E> {
    fn run<F, Fut>(&self, spec: &'static StepSpec, f: F) -> impl Future<Output = Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        crate::run_step_with(spec, f)
    }
}

/// Chosen when a check failed, so that the failed check is the only error.
pub trait RunUncheckedStep<T, E> {
    /// Never runs: the build that chose it fails.
    fn run<F, Fut>(&self, spec: &'static StepSpec, f: F) -> impl Future<Output = Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>;
}

impl<T, E> RunUncheckedStep<T, E> for &StepRunner<T, E> {
    async fn run<F, Fut>(&self, spec: &'static StepSpec, _: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        unreachable!("step `{}` was built although its output or error type failed its check", spec.name)
    }
}

/// How to encode and decode one workflow argument; made by [`workflow_input`].
pub struct InputCodec<T> {
    encode: fn(&T, &mut Vec<u8>) -> serde_json::Result<()>,
    /// Decodes one JSON value at the start of the text; also returns its length.
    decode: fn(&str) -> (serde_json::Result<T>, usize),
}

impl<T> Clone for InputCodec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for InputCodec<T> {}

impl<T> InputCodec<T> {
    /// Appends `value` to the inputs being encoded.
    pub fn encode(self, inputs: &mut InputsEncoder, value: &T) {
        if inputs.error.is_some() {
            return;
        }
        if inputs.json.len() > 1 {
            inputs.json.push(b',');
        }
        if let Err(e) = (self.encode)(value, &mut inputs.json) {
            inputs.error = Some(e);
        }
    }

    /// Decodes the next argument, named `name` in the workflow's signature.
    pub fn decode(self, inputs: &mut InputsDecoder<'_>, name: &str) -> Result<T, String> {
        let workflow = inputs.workflow;
        let fail = |what: String| format!("could not decode the inputs of workflow `{workflow}`: {what}");
        if inputs.index > 0 {
            inputs.rest = inputs.rest.trim_start();
            match inputs.rest.strip_prefix(',') {
                Some(rest) => inputs.rest = rest,
                None => return Err(fail(format!("expected {} arguments, found {}", inputs.count, inputs.index))),
            }
        }
        inputs.rest = inputs.rest.trim_start();
        if inputs.rest.starts_with(']') {
            return Err(fail(format!("expected {} arguments, found {}", inputs.count, inputs.index)));
        }
        let (value, length) = (self.decode)(inputs.rest);
        let value = value.map_err(|e| fail(format!("argument `{name}`: {e}")))?;
        inputs.rest = &inputs.rest[length..];
        inputs.index += 1;
        Ok(value)
    }
}

/// A workflow's arguments being encoded as a JSON array (the encoding of the tuple
/// of its arguments).
#[derive(Debug)]
pub struct InputsEncoder {
    json: Vec<u8>,
    error: Option<serde_json::Error>,
}

impl Default for InputsEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl InputsEncoder {
    /// Starts an empty array.
    pub fn new() -> Self {
        InputsEncoder { json: vec![b'['], error: None }
    }

    /// The encoded inputs of `workflow`, or the first argument's encoding error.
    pub fn finish(mut self, workflow: &str) -> crate::Result<String> {
        if let Some(source) = self.error {
            return Err(Error::Serialization {
                action: "encode",
                what: format!("the inputs of workflow `{workflow}`"),
                source,
            });
        }
        self.json.push(b']');
        Ok(String::from_utf8(self.json).expect("serde_json writes UTF-8"))
    }
}

/// A workflow's recorded inputs being decoded, one argument at a time.
#[derive(Debug)]
pub struct InputsDecoder<'a> {
    workflow: &'a str,
    rest: &'a str,
    index: usize,
    count: usize,
}

impl<'a> InputsDecoder<'a> {
    /// Starts decoding the `count` arguments of `workflow` from its recorded `inputs`.
    pub fn new(workflow: &'a str, inputs: &'a str, count: usize) -> Result<Self, String> {
        let text = inputs.trim_start();
        let rest = match text.strip_prefix('[') {
            Some(rest) => rest,
            // `()` encodes as `null`.
            None if count == 0 && text.trim_end() == "null" => "]",
            None => {
                return Err(format!(
                    "could not decode the inputs of workflow `{workflow}`: expected a JSON array of {count} arguments"
                ));
            }
        };
        Ok(InputsDecoder { workflow, rest, index: 0, count })
    }

    /// Checks that no input is left over.
    pub fn finish(self) -> Result<(), String> {
        let rest = self.rest.trim_start();
        match rest.strip_prefix(']') {
            Some(end) if end.trim().is_empty() => Ok(()),
            _ => Err(format!(
                "could not decode the inputs of workflow `{}`: expected {} arguments, found more (or trailing characters)",
                self.workflow, self.count
            )),
        }
    }
}

/// How to encode a workflow's output; made by [`workflow_output`].
pub struct OutputCodec<T> {
    encode: fn(&T) -> serde_json::Result<String>,
}

/// How to record a workflow's error; made by [`workflow_error`].
pub struct ErrorCodec<E> {
    message: fn(&E) -> String,
}

/// Turns what a workflow body returned into what the engine records.
pub fn workflow_outcome<T, E>(
    workflow: &str,
    result: Result<T, E>,
    output: OutputCodec<T>,
    error: ErrorCodec<E>,
) -> Outcome {
    match result {
        Ok(value) => {
            (output.encode)(&value).map_err(|e| format!("could not encode the output of workflow `{workflow}`: {e}"))
        }
        Err(e) => Err((error.message)(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(args: &(String, u64, u128)) -> String {
        let mut inputs = InputsEncoder::new();
        workflow_input::<String>().encode(&mut inputs, &args.0);
        workflow_input::<u64>().encode(&mut inputs, &args.1);
        workflow_input::<u128>().encode(&mut inputs, &args.2);
        inputs.finish("w").unwrap()
    }

    fn decode(json: &str) -> Result<(String, u64, u128), String> {
        let mut inputs = InputsDecoder::new("w", json, 3)?;
        let a = workflow_input::<String>().decode(&mut inputs, "a")?;
        let b = workflow_input::<u64>().decode(&mut inputs, "b")?;
        let c = workflow_input::<u128>().decode(&mut inputs, "c")?;
        inputs.finish()?;
        Ok((a, b, c))
    }

    #[test]
    fn inputs_encode_as_the_tuple_would() {
        let args = ("o-1".to_owned(), 1250, u128::MAX);
        let json = encode(&args);
        assert_eq!(json, serde_json::to_string(&args).unwrap());
        assert_eq!(decode(&json).unwrap(), args);
    }

    #[test]
    fn inputs_decode_after_a_jsonb_round_trip() {
        let json = format!(" [ \"o-1\" , 1250,\n {} ] ", u128::MAX);
        assert_eq!(decode(&json).unwrap(), ("o-1".to_owned(), 1250, u128::MAX));
    }

    #[test]
    fn inputs_of_the_wrong_shape_name_the_problem() {
        assert!(decode("[\"o-1\", 1]").unwrap_err().contains("expected 3 arguments, found 2"));
        assert!(decode("[\"o-1\", 1, 2, 3]").unwrap_err().contains("found more"));
        assert!(decode("[\"o-1\", \"x\", 2]").unwrap_err().contains("argument `b`"));
        assert!(decode("{}").unwrap_err().contains("expected a JSON array of 3 arguments"));
    }

    #[test]
    fn every_kind_of_json_value_is_delimited() {
        type Args = (bool, Option<String>, Vec<u8>, std::collections::BTreeMap<String, f64>, (), String);
        let args: Args = (true, None, vec![1, 2], [("a,]".to_owned(), 1.5)].into(), (), "\"]".to_owned());
        let mut inputs = InputsEncoder::new();
        workflow_input::<bool>().encode(&mut inputs, &args.0);
        workflow_input::<Option<String>>().encode(&mut inputs, &args.1);
        workflow_input::<Vec<u8>>().encode(&mut inputs, &args.2);
        workflow_input::<std::collections::BTreeMap<String, f64>>().encode(&mut inputs, &args.3);
        workflow_input::<()>().encode(&mut inputs, &args.4);
        workflow_input::<String>().encode(&mut inputs, &args.5);
        let json = inputs.finish("w").unwrap();
        assert_eq!(json, serde_json::to_string(&args).unwrap());
        let mut inputs = InputsDecoder::new("w", &json, 6).unwrap();
        let decoded: Args = (
            workflow_input().decode(&mut inputs, "a").unwrap(),
            workflow_input().decode(&mut inputs, "b").unwrap(),
            workflow_input().decode(&mut inputs, "c").unwrap(),
            workflow_input().decode(&mut inputs, "d").unwrap(),
            workflow_input().decode(&mut inputs, "e").unwrap(),
            workflow_input().decode(&mut inputs, "f").unwrap(),
        );
        inputs.finish().unwrap();
        assert_eq!(decoded, args);
    }

    #[test]
    fn no_inputs() {
        let json = InputsEncoder::new().finish("w").unwrap();
        assert_eq!(json, "[]");
        InputsDecoder::new("w", &json, 0).unwrap().finish().unwrap();
        InputsDecoder::new("w", "null", 0).unwrap().finish().unwrap();
    }

    #[test]
    fn outcomes() {
        let ok = workflow_outcome::<u32, Error>("w", Ok(7), workflow_output(), workflow_error());
        assert_eq!(ok, Ok("7".to_owned()));
        let err = workflow_outcome::<u32, Error>("w", Err(Error::NotLaunched), workflow_output(), workflow_error());
        assert!(err.unwrap_err().contains("no exactly runtime is running"));
    }
}
