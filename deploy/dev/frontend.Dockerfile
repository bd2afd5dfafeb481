# syntax=docker/dockerfile:1
# Dev image for the example's frontend (examples/fullstack/frontend) that works on its own:
# the esbuild bundle is built in and served by busybox httpd from /srv/www; syncd then
# replaces the bundle with each host build (frontend/dist -> /srv/www).
#
# For real use, with BuildKit and a registry (or `kind load docker-image`):
#
#   docker build -f deploy/dev/frontend.Dockerfile -t REGISTRY/fullstack-frontend examples/fullstack
#
# The build context is examples/fullstack. Not built by this repository's tests: they have no
# registry, and node:20 / busybox come from Docker Hub.
#
# Caching: package.json and package-lock.json are copied first, so `npm ci` reruns only when
# they change; npm's download cache is a BuildKit cache mount, so even then packages are not
# downloaded again.

FROM node:20 AS build
WORKDIR /src
COPY frontend/package.json frontend/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY frontend/build.mjs ./
COPY frontend/src ./src
COPY frontend/public ./public
RUN npm run build

FROM busybox:1.36
COPY --from=build /src/dist /srv/www
EXPOSE 8081
CMD ["httpd", "-f", "-p", "8081", "-h", "/srv/www"]
