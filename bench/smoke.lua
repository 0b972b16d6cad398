-- wrk script: POST one binary-mode CloudEvent per request.
wrk.method = "POST"
wrk.body = '{"id":1,"item":"book","qty":2}'
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-id"] = "smoke-1"
wrk.headers["ce-source"] = "/bench"
wrk.headers["ce-type"] = "com.example.order"
wrk.headers["content-type"] = "application/json"
