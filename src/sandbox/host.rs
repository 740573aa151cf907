//! The host functions the prelude captures, and tool results turned into program values.

use super::*;

/// A tool's JSON text as the value the program receives: built directly when serde_json
/// reads it, else by `JSON.parse`, which also accepts what serde_json refuses.
pub(super) fn tool_result<'js>(ctx: &Ctx<'js>, text: &str) -> Result<Value<'js>, ()> {
    match json::parse(ctx, text) {
        Ok(v) => Ok(v),
        Err(json::Failed::Engine) => {
            drop(ctx.catch());
            Err(())
        }
        Err(json::Failed::Json) => ctx.json_parse(text.as_bytes()).catch(ctx).map_err(drop),
    }
}

/// The host functions the prelude captures. They are reachable only through the prelude's
/// closures, never as globals.
pub(super) fn host_functions<'js>(
    ctx: &Ctx<'js>,
    control: &Rc<Control>,
    exec: &ExecCell,
) -> rquickjs::Result<Object<'js>> {
    let host = Object::new(ctx.clone())?;
    {
        let exec = Rc::clone(exec);
        let control = Rc::clone(control);
        let call = Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  target: Value<'js>,
                  args: Value<'js>,
                  site: Value<'js>|
                  -> rquickjs::Result<Promise<'js>> {
                let (promise, resolve, reject) = Promise::new(&ctx)?;
                let mut guard = exec.borrow_mut();
                let Some(exec) = guard.as_mut() else { return Ok(promise) };
                let builtin = target.as_string().map(|s| s.to_string()).transpose()?;
                let target = match &builtin {
                    Some(name) => Target::Builtin(name),
                    None => Target::Tool(target.as_number().map_or(usize::MAX, |n| n as usize)),
                };
                // A call with no argument sends `{}`; an explicit `null` is sent as it is, for
                // the schema to judge.
                let args = if args.is_undefined() {
                    Ok(serde_json::Value::Object(Default::default()))
                } else {
                    Walker::new(
                        ctx.clone(),
                        exec.limits.max_tool_argument_bytes,
                        Overflow::Fail,
                        None,
                        convert::Texts::default(),
                    )
                    .convert(&args)
                    .map(|c| c.json)
                    .map_err(|why| format!("the arguments cannot be sent: {why}"))
                };
                match exec.bridge.call(target, args) {
                    Ok(id) => {
                        let resolvers = Resolvers(
                            Persistent::save(&ctx, resolve),
                            Persistent::save(&ctx, reject),
                            Persistent::save(&ctx, site),
                        );
                        exec.resolvers.insert(id, resolvers);
                    }
                    // The program is being stopped; its promise never settles.
                    Err(kind) => control.abort.set(Some(kind)),
                }
                Ok(promise)
            },
        )?;
        host.set("call", call)?;
    }
    {
        let exec = Rc::clone(exec);
        let control = Rc::clone(control);
        // Returns false once the output limit is passed, so the prelude stops formatting and
        // copying lines until the interrupt ends the program (a loop logging megabyte lines
        // would otherwise pay for thousands more copies first).
        let log = Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  level: String,
                  args: Array<'js>,
                  builtins: Value<'js>|
                  -> rquickjs::Result<bool> {
                let args = args.iter::<Value>().collect::<rquickjs::Result<Vec<_>>>()?;
                // Formatted before the execution state is borrowed: a RegExp's replaced
                // `source` getter may log in turn.
                let max = exec.borrow().as_ref().map_or(usize::MAX, Exec::line_budget);
                let message = inspect::format(&ctx, &args, &inspect::Builtins::new(&ctx, builtins), max)?;
                if let Some(exec) = exec.borrow_mut().as_mut() {
                    if let Err(kind) = exec.log(LogLevel::parse(&level), message) {
                        control.abort.set(Some(kind));
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )?;
        host.set("log", log)?;
    }
    {
        let exec = Rc::clone(exec);
        let timer = Function::new(ctx.clone(), move |ms: f64| -> f64 {
            let delay = Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 1e9));
            exec.borrow_mut().as_mut().map_or(0.0, |e| e.bridge.timer(delay) as f64)
        })?;
        host.set("timer", timer)?;
    }
    {
        let exec = Rc::clone(exec);
        let clear = Function::new(ctx.clone(), move |id: f64| {
            if let Some(e) = exec.borrow_mut().as_mut() {
                e.bridge.clear_timer(id as u64);
            }
        })?;
        host.set("clearTimer", clear)?;
    }
    {
        let exec = Rc::clone(exec);
        let unknown = Function::new(ctx.clone(), move |namespace: String, name: String| -> String {
            match exec.borrow().as_ref() {
                Some(e) => e.bridge.unknown_tool(&namespace, &name),
                None => format!("{namespace}.{name} is not a tool of {namespace}"),
            }
        })?;
        host.set("unknownTool", unknown)?;
    }
    {
        let exec = Rc::clone(exec);
        // A saved program as a function: compiled from the registry of the running program
        // (a script named after the skill's file, so its frames say where they are).
        let skill =
            Function::new(ctx.clone(), move |ctx: Ctx<'js>, name: String| -> rquickjs::Result<Value<'js>> {
                let js = exec.borrow().as_ref().and_then(|e| e.bridge.skill(&name));
                let Some(js) = js else {
                    return Err(rquickjs::Exception::throw_type(
                        &ctx,
                        &format!("skills.{name} is not a saved program"),
                    ));
                };
                let mut options = rquickjs::context::EvalOptions::default();
                options.strict = true;
                options.filename = Some(format!("{}/{name}.ts", crate::skills::NAMESPACE));
                ctx.eval_with_options(js.as_bytes(), options)
            })?;
        host.set("skill", skill)?;
    }
    host.set("version", env!("CARGO_PKG_VERSION"))?;
    Ok(host)
}
