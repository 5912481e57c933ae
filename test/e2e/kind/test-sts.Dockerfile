# The test STS (test/peers/test-sts) as an image for the kind e2e test.
FROM node:20-bookworm-slim
WORKDIR /sts
COPY test/peers/test-sts/package.json test/peers/test-sts/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY test/peers/test-sts/ ./
ENTRYPOINT ["node", "server.mjs", "--host", "0.0.0.0", "--port", "8080"]
