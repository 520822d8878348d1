use super::*;

fn ok(text: &str, ctx: Ctx) -> Snippet {
    parse(text, ctx).unwrap_or_else(|e| panic!("{text:?} in {ctx:?}: {e}"))
}

/// Snippets as people write them in public manifests: each parses, to the directives named.
#[test]
fn the_snippets_people_write_parse() {
    let rows: &[(Ctx, &str, &[&str])] = &[
        (
            Ctx::Location,
            "proxy_set_header X-Real-IP $remote_addr;",
            &["ProxySetHeader"],
        ),
        (
            Ctx::Location,
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\nproxy_set_header Host $host;",
            &["ProxySetHeader", "ProxySetHeader"],
        ),
        (
            Ctx::Location,
            "add_header X-Frame-Options \"SAMEORIGIN\" always;\nadd_header Cache-Control no-store;",
            &["AddHeader", "AddHeader"],
        ),
        (
            Ctx::Location,
            "more_set_headers \"X-Frame-Options: DENY\" \"X-Content-Type-Options: nosniff\";",
            &["MoreSetHeaders"],
        ),
        (
            Ctx::Location,
            "more_set_headers -s '404 500' -t text/html 'X-E: 1';",
            &["MoreSetHeaders"],
        ),
        (
            Ctx::Location,
            "more_clear_headers Server 'X-Powered-*';",
            &["MoreClearHeaders"],
        ),
        (
            Ctx::Location,
            "more_set_input_headers -r 'Authorization: x';",
            &["MoreSetInputHeaders"],
        ),
        (
            Ctx::Location,
            "more_clear_input_headers Cookie;",
            &["MoreClearInputHeaders"],
        ),
        (Ctx::Location, "proxy_hide_header X-Powered-By;", &["ProxyHideHeader"]),
        (Ctx::Location, "return 403;", &["Return"]),
        (Ctx::Location, "return 200 'ok';", &["Return"]),
        (Ctx::Location, "return 301 https://$host$request_uri;", &["Return"]),
        (Ctx::Location, "return https://example.com/;", &["Return"]),
        (Ctx::Location, "rewrite ^/old/(.*)$ /new/$1 break;", &["Rewrite"]),
        (
            Ctx::Location,
            "rewrite ^/(.*)$ https://example.com/$1 permanent;",
            &["Rewrite"],
        ),
        (Ctx::Location, "rewrite ^/a$ /b;", &["Rewrite"]),
        (
            Ctx::Location,
            "if ($http_x_forwarded_proto != 'https') { return 301 https://$host$request_uri; }",
            &["If"],
        ),
        (
            Ctx::Location,
            "if ($request_uri ~* \"^/admin\") {\n  return 403;\n}",
            &["If"],
        ),
        (Ctx::Location, "if ($http_x_debug) { rewrite ^ /debug last; }", &["If"]),
        (
            Ctx::Location,
            "allow 10.0.0.0/8;\nallow 192.0.2.1;\ndeny all;",
            &["Access", "Access", "Access"],
        ),
        (
            Ctx::Location,
            "chunked_transfer_encoding off;\nproxy_http_version 1.1;",
            &[],
        ),
        (
            Ctx::Location,
            "proxy_set_header Upgrade $http_upgrade;\nproxy_set_header Connection \"upgrade\";",
            &[],
        ),
        (Ctx::Server, "location /metrics { deny all; }", &["Location"]),
        (Ctx::Server, "location = /metrics { return 403; }", &["Location"]),
        (
            Ctx::Server,
            "location ~* ^/(actuator|internal) {\n  deny all;\n  return 403;\n}",
            &["Location"],
        ),
        (Ctx::Server, "location ^~ /.git { return 404; }", &["Location"]),
        (
            Ctx::Server,
            "if ($host = 'old.example') { return 301 https://new.example$request_uri; }",
            &["If"],
        ),
        (
            Ctx::Server,
            "add_header Strict-Transport-Security \"max-age=31536000\" always;",
            &["AddHeader"],
        ),
        (
            Ctx::Server,
            "# a comment\nmore_set_headers 'X-A: b'; # trailing",
            &["MoreSetHeaders"],
        ),
        (Ctx::Server, "proxy_set_header X-A b;", &[]),
        (
            Ctx::Auth,
            "proxy_set_header X-Forwarded-Host $http_host;",
            &["ProxySetHeader"],
        ),
        (
            Ctx::Auth,
            "more_set_input_headers 'X-Auth: 1';\nproxy_http_version 1.1;",
            &["MoreSetInputHeaders"],
        ),
        (Ctx::Location, ";;", &[]),
    ];
    for (ctx, text, kinds) in rows {
        let s = ok(text, *ctx);
        let got: Vec<String> = s
            .directives
            .iter()
            .map(|d| format!("{d:?}").split([' ', '(', '{']).next().unwrap().to_owned())
            .collect();
        assert_eq!(got, *kinds, "{text:?}");
    }
}

#[test]
fn parsed_values_are_typed() {
    let s = ok("add_header X-A \"v $host\" always;", Ctx::Location);
    let Directive::AddHeader { name, value, always } = &s.directives[0] else {
        panic!()
    };
    assert_eq!((name.as_str(), *always), ("x-a", true));
    assert_eq!(value.parts, [Part::Lit("v ".into()), Part::Var(Var::Host)]);
    let s = ok(
        "more_set_headers -s 404 -s '500 503' 'X-A: 1' 'X-B:' X-C;",
        Ctx::Location,
    );
    let Directive::MoreSetHeaders { filter, fields } = &s.directives[0] else {
        panic!()
    };
    assert_eq!(filter.statuses, [404, 500, 503]);
    assert_eq!(fields.len(), 3);
    assert!(fields[0].1.is_some() && fields[1].1.is_none() && fields[2].1.is_none());
    let s = ok("return 418 'short and stout';", Ctx::Location);
    assert_eq!(
        s.directives[0],
        Directive::Return(Return {
            code: 418,
            text: Some(Template {
                parts: vec![Part::Lit("short and stout".into())]
            })
        })
    );
    let s = ok("location = /x { deny all; }", Ctx::Server);
    let Directive::Location(l) = &s.directives[0] else {
        panic!()
    };
    assert_eq!(l.matcher, LocationMatch::Exact("/x".into()));
    assert_eq!(
        l.body,
        [Directive::Access {
            allow: false,
            net: None
        }]
    );
    let s = ok("chunked_transfer_encoding off;", Ctx::Location);
    assert!(s.notes[0].contains("chunked_transfer_encoding (line 1)") || s.notes[0].contains("line 1"));
}

/// IngressNightmare and friends: every row is refused, with the line and a word of why.
#[test]
fn hostile_snippets_are_refused() {
    let rows: &[(Ctx, &str, usize, &str)] = &[
        // Breaking out of the block the snippet is pasted into.
        (
            Ctx::Location,
            "add_header X a; }\nserver { listen 80; }",
            1,
            "without a block to close",
        ),
        (Ctx::Location, "}", 1, "without a block to close"),
        (Ctx::Server, "location / {\nreturn 200;", 2, "closing"),
        (Ctx::Location, "add_header X a; } location /x { return 200; ", 1, "`}`"),
        // A comment hiding the `;` that would end the directive.
        (Ctx::Location, "add_header X a # ;\n", 1, "without `;`"),
        (
            Ctx::Location,
            "add_header X a #;\nload_module /tmp/evil.so;",
            1,
            "`add_header`",
        ),
        // Modules, Lua, includes, engines, anything outside the grammar.
        (Ctx::Location, "load_module /tmp/x.so;", 1, "load_module"),
        (
            Ctx::Location,
            "content_by_lua_block { os.execute('id') }",
            1,
            "quote inside a word",
        ),
        (
            Ctx::Location,
            "content_by_lua_block { os.execute(\"id\") }",
            1,
            "quote inside a word",
        ),
        (
            Ctx::Location,
            "content_by_lua_block {\n ngx.say(1)\n}",
            1,
            "does not take a block",
        ),
        (Ctx::Location, "access_by_lua 'os.execute(\"id\")';", 1, "access_by_lua"),
        (Ctx::Location, "lua_package_path '/tmp/?.lua';", 1, "lua_package_path"),
        (Ctx::Location, "set_by_lua $x 'return 1';", 1, "set_by_lua"),
        (Ctx::Location, "include /etc/passwd;", 1, "include"),
        (Ctx::Server, "ssl_engine /tmp/evil.so;", 1, "ssl_engine"),
        (Ctx::Location, "proxy_pass http://169.254.169.254/;", 1, "proxy_pass"),
        (Ctx::Location, "root /;\nautoindent on;", 1, "root"),
        (Ctx::Location, "alias /var/run/secrets/;", 1, "alias"),
        (Ctx::Location, "sub_filter 'a' 'b';", 1, "sub_filter"),
        (Ctx::Location, "set $x 1;", 1, "`set`"),
        (Ctx::Location, "error_page 404 = @x;", 1, "error_page"),
        (Ctx::Location, "\"add_header\" X a;", 1, "in quotes"),
        // Variables outside the list, command substitution, shell-ish dollars.
        (Ctx::Location, "add_header X $(id);", 1, "variable"),
        (Ctx::Location, "add_header X ${ssl_client_s_dn};", 1, "ssl_client_s_dn"),
        (Ctx::Location, "proxy_set_header X $request_body;", 1, "request_body"),
        (Ctx::Location, "return 200 $document_root;", 1, "document_root"),
        (Ctx::Location, "add_header X $1;", 1, "outside a rewrite"),
        // Quotes, escapes and control bytes.
        (Ctx::Location, "add_header X \"a;\n", 1, "unbalanced quote"),
        (Ctx::Location, "add_header X 'a\\'", 1, "unbalanced quote"),
        (Ctx::Location, "add_header X \"a\\r\\nSet-Cookie: x=1\";", 1, "CR, LF"),
        (Ctx::Location, "more_set_headers \"X: a\\nInjected: 1\";", 1, "CR, LF"),
        (Ctx::Location, "proxy_set_header X \"a\\rb\";", 1, "CR, LF"),
        (Ctx::Location, "add_header X a\0b;", 1, "control byte"),
        (
            Ctx::Location,
            "return 302 \"https://x/\\r\\nSet-Cookie:a\";",
            1,
            "control bytes",
        ),
        // Fields that frame the message, bad names, bad statuses.
        (Ctx::Location, "add_header Content-Length 0;", 1, "frames the message"),
        (
            Ctx::Location,
            "proxy_set_header Transfer-Encoding chunked;",
            1,
            "frames the message",
        ),
        (
            Ctx::Location,
            "more_set_input_headers 'Content-Length: 5';",
            1,
            "frames the message",
        ),
        (Ctx::Location, "more_clear_headers '*';", 1, "every field"),
        (Ctx::Location, "add_header \"X A\" b;", 1, "not a field name"),
        (Ctx::Location, "add_header X: b;", 1, "not a field name"),
        (Ctx::Location, "return 444;", 1, "444"),
        (Ctx::Location, "return 99999999999999999999;", 1, "200 to 599"),
        (Ctx::Location, "return 200 a b;", 1, "expected"),
        (Ctx::Location, "add_header X;", 1, "expected NAME VALUE"),
        (Ctx::Location, "add_header X a never;", 1, "expected NAME VALUE"),
        (Ctx::Location, "more_set_headers -x 'X: a';", 1, "-x"),
        (Ctx::Location, "more_set_headers -s abc 'X: a';", 1, "not a status"),
        // rewrite, if, location, access.
        (Ctx::Location, "rewrite ^/(.* /x;", 1, "regular expression"),
        (Ctx::Location, "rewrite ^ x;", 1, "path or an http(s) URL"),
        (Ctx::Location, "rewrite ^ /x sometimes;", 1, "unknown flag"),
        (
            Ctx::Location,
            "if ($http_x = a) { add_header X a; }",
            1,
            "not allowed in an `if` block",
        ),
        (
            Ctx::Location,
            "if ($http_x = a) { proxy_pass http://x; }",
            1,
            "proxy_pass",
        ),
        (Ctx::Location, "if $http_x { return 403; }", 1, "`(`"),
        (Ctx::Location, "if ($http_x { return 403; }", 1, "`)`"),
        (
            Ctx::Location,
            "if (-f /etc/passwd) { return 403; }",
            1,
            "expected ($var)",
        ),
        (Ctx::Location, "if (-f) { return 403; }", 1, "one variable"),
        (Ctx::Location, "if ($http_x <> a) { return 403; }", 1, "operator"),
        (
            Ctx::Location,
            "if ($ssl_client_verify) { return 403; }",
            1,
            "ssl_client_verify",
        ),
        (
            Ctx::Location,
            "location /x { return 403; }",
            1,
            "not allowed in a location",
        ),
        (Ctx::Server, "location @named { return 403; }", 1, "named locations"),
        (
            Ctx::Server,
            "location /a { location /b { return 403; } }",
            1,
            "not allowed in a location",
        ),
        (Ctx::Server, "location x { return 403; }", 1, "not a path"),
        (Ctx::Location, "deny 10.0.0.0/33;", 1, "address/CIDR"),
        (Ctx::Location, "allow;", 1, "address/CIDR"),
        // Auth context: only header directives.
        (Ctx::Auth, "return 200;", 1, "not allowed in auth-snippet"),
        (Ctx::Auth, "add_header X a;", 1, "not allowed in auth-snippet"),
        // Lines are counted.
        (
            Ctx::Location,
            "add_header X a;\n\n# fine\nperl_modules /tmp;",
            4,
            "perl_modules",
        ),
    ];
    for (ctx, text, line, says) in rows {
        match parse(text, *ctx) {
            Ok(s) => panic!("{text:?} in {ctx:?} was accepted: {s:?}"),
            Err(e) => {
                assert_eq!(e.line, *line, "{text:?}: {e}");
                assert!(e.to_string().contains(says), "{text:?}: {e}");
            }
        }
    }
}

#[test]
fn huge_and_deep_snippets_are_refused() {
    let huge = format!("add_header X \"{}\";", "a".repeat(lexer::MAX_LEN));
    assert!(parse(&huge, Ctx::Location).unwrap_err().message.contains("longer than"));
    let deep = format!(
        "{}return 403;{}",
        "location /a { if ($http_x) { ".repeat(3),
        "} }".repeat(3)
    );
    let e = parse(&deep, Ctx::Server).unwrap_err();
    assert!(
        e.message.contains("nested too deep") || e.message.contains("not allowed"),
        "{e}"
    );
    let many_ifs = "if ($http_x) { if ($http_y) { return 403; } }";
    assert!(parse(many_ifs, Ctx::Location).is_err());
    // Many directives within the length limit are fine.
    let many = "add_header X a;\n".repeat(500);
    assert_eq!(ok(&many, Ctx::Location).directives.len(), 500);
}

// The runtime: the phases a request goes through, without sockets.

fn state<'h>(headers: &'h HeaderMap, uri: &str, args: Option<&str>) -> State<'h> {
    State {
        uri: uri.into(),
        args: args.map(str::to_owned),
        rewritten: false,
        headers,
        base: Owned {
            host: "demo.test".into(),
            remote_addr: "192.0.2.7".into(),
            scheme: "http",
            server_port: 8080,
            request_uri: format!("{uri}{}", args.map(|a| format!("?{a}")).unwrap_or_default()),
            method: "GET".into(),
            uri: uri.into(),
            args: args.map(str::to_owned),
        },
    }
}

#[test]
fn rewrites_returns_and_ifs_run_in_order() {
    let h = HeaderMap::new();
    let run = |text: &str, uri: &str, args: Option<&str>| {
        let s = ok(text, Ctx::Location);
        let mut st = state(&h, uri, args);
        let flow = st.run(&s.directives);
        let flow = match flow {
            Flow::Answer(code, text) => format!("answer {code} {}", text.unwrap_or_default()),
            Flow::Stop => "stop".into(),
            Flow::Last => "last".into(),
            Flow::Done { changed } => format!("done {changed}"),
        };
        (flow, st.uri, st.args)
    };
    /// Snippet, URI, args; then the flow, URI and args after it.
    type Row<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, &'a str, Option<&'a str>);
    let rows: &[Row<'_>] = &[
        ("return 403;", "/a", None, "answer 403 ", "/a", None),
        (
            "return 200 'hi $host';",
            "/a",
            None,
            "answer 200 hi demo.test",
            "/a",
            None,
        ),
        (
            "rewrite ^/old/(.*)$ /new/$1 break; return 403;",
            "/old/x",
            Some("q=1"),
            "stop",
            "/new/x",
            Some("q=1"),
        ),
        (
            "rewrite ^/old/(.*)$ /new/$1 break; return 403;",
            "/other",
            None,
            "answer 403 ",
            "/other",
            None,
        ),
        (
            "rewrite ^/a$ /b?x=1 last;",
            "/a",
            Some("q=1"),
            "last",
            "/b",
            Some("x=1&q=1"),
        ),
        ("rewrite ^/a$ /b? last;", "/a", Some("q=1"), "last", "/b", None),
        ("rewrite ^/a$ /b;", "/a", None, "done true", "/b", None),
        (
            "rewrite ^/(.*)$ https://new.example/$1 permanent;",
            "/p",
            Some("q=1"),
            "answer 301 https://new.example/p?q=1",
            "/p",
            Some("q=1"),
        ),
        (
            "rewrite ^/(.*)$ /moved/$1 redirect;",
            "/p",
            None,
            "answer 302 /moved/p",
            "/p",
            None,
        ),
        (
            "rewrite ^ https://x.example/;",
            "/p",
            None,
            "answer 302 https://x.example/",
            "/p",
            None,
        ),
        (
            "if ($uri ~ ^/admin) { return 403; } return 200 ok;",
            "/admin/x",
            None,
            "answer 403 ",
            "/admin/x",
            None,
        ),
        (
            "if ($uri ~ ^/admin) { return 403; } return 200 ok;",
            "/public",
            None,
            "answer 200 ok",
            "/public",
            None,
        ),
        (
            "if ($arg_debug = 1) { return 404; }",
            "/p",
            Some("debug=1"),
            "answer 404 ",
            "/p",
            Some("debug=1"),
        ),
        (
            "if ($arg_debug != 1) { return 404; }",
            "/p",
            Some("debug=1"),
            "done false",
            "/p",
            Some("debug=1"),
        ),
        (
            "if ($http_x_missing) { return 404; }",
            "/p",
            None,
            "done false",
            "/p",
            None,
        ),
        ("break; return 403;", "/p", None, "stop", "/p", None),
        ("add_header X a;", "/p", None, "done false", "/p", None),
    ];
    for (text, uri, args, flow, new_uri, new_args) in rows {
        let (f, u, a) = run(text, uri, *args);
        assert_eq!(
            (f.as_str(), u.as_str(), a.as_deref()),
            (*flow, *new_uri, *new_args),
            "{text:?} on {uri}"
        );
    }
}

#[test]
fn allow_and_deny_take_the_first_match_and_the_location_replaces_the_server() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let server = ok("deny 192.0.2.0/24;", Ctx::Server).directives;
    let location = ok("allow 10.0.0.0/8; deny all;", Ctx::Location).directives;
    assert!(denied(&server, &[], ip("192.0.2.7")));
    assert!(!denied(&server, &[], ip("10.1.1.1")));
    assert!(!denied(&server, &location, ip("10.1.1.1")));
    assert!(denied(&server, &location, ip("192.0.2.7")));
    assert!(denied(&server, &location, ip("::1")));
    assert!(!denied(&[], &[], ip("192.0.2.7")));
}

#[test]
fn response_fields_follow_nginx_rules() {
    let h = HeaderMap::new();
    let st = state(&h, "/p", None);
    let server = ok(
        "add_header X-Server s;\nmore_set_headers 'X-More-Server: 1';\nproxy_hide_header X-Hidden-By-Server;",
        Ctx::Server,
    )
    .directives;
    let location = ok(
        "add_header X-Loc $host;\nadd_header X-Always a always;\nmore_set_headers -s 404 'X-Only-404: 1';\n\
         more_set_headers 'Server: mine' 'X-Backend:';\nmore_clear_headers 'X-Secret-*';\nproxy_hide_header X-Powered-By;",
        Ctx::Location,
    )
    .directives;
    let respond = respond(&server, &location, &st);
    let build = |status: u16| {
        let mut resp = Response::builder()
            .status(status)
            .header("x-powered-by", "php")
            .header("x-hidden-by-server", "1")
            .header("x-backend", "b")
            .header("server", "theirs")
            .header("x-secret-token", "t")
            .header("x-loc", "from-backend")
            .body(crate::proxy::empty())
            .unwrap();
        respond.apply(&mut resp);
        resp
    };
    let ok200 = build(200);
    let h = ok200.headers();
    assert!(!h.contains_key("x-powered-by"), "proxy_hide_header");
    assert_eq!(
        h["x-hidden-by-server"], "1",
        "the location's proxy_hide_header replaces the server's"
    );
    assert!(
        !h.contains_key("x-server"),
        "the location's add_header replaces the server's"
    );
    let locs: Vec<_> = h.get_all("x-loc").iter().collect();
    assert_eq!(locs, ["from-backend", "demo.test"], "add_header appends");
    assert_eq!(h["x-always"], "a");
    assert_eq!(h["x-more-server"], "1", "headers-more's are inherited and added to");
    assert!(!h.contains_key("x-only-404"));
    assert_eq!(h["server"], "mine", "more_set_headers replaces");
    assert!(!h.contains_key("x-backend"), "`Name:` clears");
    assert!(!h.contains_key("x-secret-token"), "wildcard clear");
    let e404 = build(404);
    let h = e404.headers();
    let locs: Vec<_> = h.get_all("x-loc").iter().collect();
    assert_eq!(locs, ["from-backend"], "add_header only on 2xx/3xx");
    assert_eq!(h["x-always"], "a", "always: every status");
    assert_eq!(h["x-only-404"], "1");
    assert_eq!(h["x-more-server"], "1", "more_set_headers on every status");
    // With no add_header of its own, the location inherits the server's.
    let inherit = super::respond(&server, &[], &st);
    let mut resp = Response::builder().status(204).body(crate::proxy::empty()).unwrap();
    inherit.apply(&mut resp);
    assert_eq!(resp.headers()["x-server"], "s");
}

#[test]
fn request_fields_are_set_replaced_and_cleared() {
    let location = ok(
        "more_set_input_headers 'X-In: $http_x_orig' 'X-Gone:';\nmore_set_input_headers -r 'X-Only-If-There: r';\n\
         more_clear_input_headers 'X-Drop-*';\nproxy_set_header X-Real-IP $remote_addr;\nproxy_set_header Accept-Encoding \"\";\n\
         proxy_set_header X-Seen $http_x_in;",
        Ctx::Location,
    )
    .directives;
    let plan = Plan {
        input: location
            .iter()
            .filter(|d| {
                matches!(
                    d,
                    Directive::MoreSetInputHeaders { .. } | Directive::MoreClearInputHeaders { .. }
                )
            })
            .cloned()
            .collect(),
        upstream: location
            .iter()
            .filter_map(|d| match d {
                Directive::ProxySetHeader { name, value } => Some((name.clone(), value.clone())),
                _ => None,
            })
            .collect(),
        vars: Owned {
            remote_addr: "192.0.2.7".into(),
            ..Owned::default()
        },
        ..Plan::default()
    };
    let mut h = HeaderMap::new();
    h.insert("x-orig", "o".parse().unwrap());
    h.insert("x-gone", "g".parse().unwrap());
    h.insert("x-drop-a", "1".parse().unwrap());
    h.insert("x-real-ip", "6.6.6.6".parse().unwrap());
    h.insert("accept-encoding", "gzip".parse().unwrap());
    plan.input(&mut h);
    assert_eq!(h["x-in"], "o");
    assert!(!h.contains_key("x-gone") && !h.contains_key("x-drop-a") && !h.contains_key("x-only-if-there"));
    plan.upstream(&mut h);
    assert_eq!(h["x-real-ip"], "192.0.2.7", "replaced, not added");
    assert_eq!(h.get_all("x-real-ip").iter().count(), 1);
    assert!(!h.contains_key("accept-encoding"), "an empty value is not sent");
    assert_eq!(h["x-seen"], "o", "proxy_set_header sees the changed input fields");
}
