// dcmjs ships no type declarations; we use only its data dictionary and type that where we use it.
declare module "dcmjs" {
  const dcmjs: unknown;
  export default dcmjs;
}
