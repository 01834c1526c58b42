//! A corpus of malformed plan files (fixtures/malformed), each with one problem: each must give
//! its own clear error with file:line:col and a hint, exit 1, never panic, and write nothing.

use aspects_e2e::Sandbox;

#[test]
fn every_malformed_plan_gets_a_clear_error_and_nothing_is_written() {
    insta::glob!("../fixtures/malformed", "*.toml", |path| {
        let s = Sandbox::new("malformed");
        let name = path.file_name().unwrap().to_str().unwrap();
        std::fs::copy(path, s.path(name)).unwrap();
        // A missing secret value is no problem for validate, which reads none.
        let text = std::fs::read_to_string(path).unwrap();
        let snapshot = if text.starts_with("# malformed (found by plan") { "plan" } else { "validate" };
        if snapshot == "plan" {
            assert_eq!(s.run(&["-f", name, "validate"]).code, 0, "{name}: validate needs no secret values");
        }
        for command in ["validate", "plan"].into_iter().filter(|c| snapshot == "validate" || *c == "plan") {
            let r = s.run(&["-f", name, command]);
            assert_eq!(r.code, 1, "{name}: {command}: {r:?}");
            assert!(r.stdout.is_empty(), "{name}: errors go to stderr: {r:?}");
            assert!(!r.stderr.contains("panicked"), "{name}: {r:?}");
            assert!(r.stderr.starts_with("error: "), "{name}: {r:?}");
            assert!(r.stderr.contains("hint: "), "{name}: every error says what to do: {r:?}");
            let written: Vec<_> = std::fs::read_dir(&s.dir).unwrap().flatten().map(|e| e.file_name()).collect();
            assert_eq!(written, [name], "{name}: {command} wrote something");
            if command == snapshot {
                insta::assert_snapshot!(s.scrub(&r.stderr));
            }
        }
    });
}
