# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
# CI replays this file without a Docker engine: scripts/ci/replay-dockerfile.ts.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY types ./types
COPY src ./src
COPY plugins ./plugins
COPY routes ./routes
COPY scripts ./scripts
RUN npm run build

# Runtime stage: production dependencies and the compiled output only (no tsx):
# `npm run token` and `npm run prewarm` run dist/scripts/*.js through scripts/cli.mjs.
FROM node:24-bookworm-slim AS runtime
# DATA_DIR: the embedded database (when DATABASE_URL is not set), somewhere USER node may write.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 DATA_DIR=/home/node/data
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The prompt files, where dist/src/domain/prompt.js reads them (../../prompts).
COPY prompts ./dist/prompts
COPY scripts/cli.mjs ./scripts/cli.mjs
COPY openapi ./openapi
COPY public ./public
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD node -e "fetch('http://127.0.0.1:3000/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/server.js"]
