-- wrk: GET with the contents of the file named by TOKEN_FILE as the Authorization
-- header, as AWS SDKs call AWS_CONTAINER_CREDENTIALS_FULL_URI.
local file = assert(io.open(os.getenv("TOKEN_FILE"), "rb"))
wrk.method = "GET"
wrk.headers["Authorization"] = file:read("*a")
file:close()
