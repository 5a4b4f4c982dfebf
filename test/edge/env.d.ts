// Vite's `?raw` imports (the topology fixtures are read as text, as a user would upload them).
declare module "*?raw" {
  const text: string;
  export default text;
}

// Vite's import.meta.glob, as far as the edge tests use it (eager `?raw` text of test sources).
interface ImportMeta {
  glob(pattern: string, options: { query: "?raw"; import: "default"; eager: true }): Record<string, unknown>;
}
