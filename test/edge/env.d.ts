// Vite's `?raw` imports (the topology fixtures are read as text, as a user would upload them).
declare module "*?raw" {
  const text: string;
  export default text;
}
